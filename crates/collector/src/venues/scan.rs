//! A strict, forward-only reader of the JSON objects venues send most: flat
//! objects of unescaped strings, integers and booleans, with arrays of
//! string tuples for book levels. It reads them faster than serde_json does
//! (no visitors, one-byte keys compared as bytes), and it never guesses:
//! anything it does not take (an escape, a float where an integer goes,
//! a duplicate key, bad syntax) ends the read with `None`. The venue then
//! parses the frame with serde, so every frame gets serde's answer, only
//! sooner for the common shapes.

/// Objects and arrays nested deeper than this are left to serde.
const MAX_DEPTH: u32 = 32;

pub(crate) struct Scan<'a> {
    text: &'a str,
    at: usize,
}

impl<'a> Scan<'a> {
    pub(crate) fn new(text: &'a str) -> Scan<'a> {
        Scan { text, at: 0 }
    }

    /// A scan of `text` from byte `at` (a character boundary).
    pub(crate) fn from(text: &'a str, at: usize) -> Scan<'a> {
        Scan { text, at }
    }

    fn bytes(&self) -> &'a [u8] {
        self.text.as_bytes()
    }

    #[inline]
    fn peek(&mut self) -> Option<u8> {
        let bytes = self.bytes();
        while let Some(&b) = bytes.get(self.at) {
            if !matches!(b, b' ' | b'\t' | b'\n' | b'\r') {
                return Some(b);
            }
            self.at += 1;
        }
        None
    }

    fn eat(&mut self, expected: u8) -> Option<()> {
        (self.peek()? == expected).then(|| self.at += 1)
    }

    /// Only whitespace is left.
    pub(crate) fn end(&mut self) -> Option<()> {
        self.peek().is_none().then_some(())
    }

    /// Reads an object, calling `field` with each key; `field` must read
    /// the value (or [`Scan::skip`] it).
    pub(crate) fn object(&mut self, field: impl FnMut(&mut Self, &'a str) -> Option<()>) -> Option<()> {
        self.eat(b'{')?;
        if self.closes(b'}')? {
            return Some(());
        }
        self.members(field)
    }

    /// The rest of an object whose opening and first members the caller
    /// has read already: from the `,` or `}` after them.
    pub(crate) fn rest_of_object(&mut self, field: impl FnMut(&mut Self, &'a str) -> Option<()>) -> Option<()> {
        if self.more(b'}')? {
            self.members(field)
        } else {
            Some(())
        }
    }

    fn members(&mut self, mut field: impl FnMut(&mut Self, &'a str) -> Option<()>) -> Option<()> {
        loop {
            let key = self.str()?;
            self.eat(b':')?;
            field(self, key)?;
            if !self.more(b'}')? {
                return Some(());
            }
        }
    }

    /// Reads an array, calling `element` for each element.
    pub(crate) fn array(&mut self, mut element: impl FnMut(&mut Self) -> Option<()>) -> Option<()> {
        self.eat(b'[')?;
        if self.closes(b']')? {
            return Some(());
        }
        loop {
            element(self)?;
            if !self.more(b']')? {
                return Some(());
            }
        }
    }

    /// Whether `close` comes next (read if so): an empty object or array.
    fn closes(&mut self, close: u8) -> Option<bool> {
        let next = self.peek()? == close;
        if next {
            self.at += 1;
        }
        Some(next)
    }

    /// After a member or element: `,` (read; another follows) or `close`
    /// (read; the end), anything else is bad syntax.
    #[inline]
    fn more(&mut self, close: u8) -> Option<bool> {
        match self.peek()? {
            b',' => {
                self.at += 1;
                Some(true)
            }
            b if b == close => {
                self.at += 1;
                Some(false)
            }
            _ => None,
        }
    }

    /// A string without escapes, borrowed from the text.
    #[inline]
    pub(crate) fn str(&mut self) -> Option<&'a str> {
        let bytes = self.bytes();
        if bytes.get(self.at) == Some(&b'"') {
            self.at += 1;
        } else {
            self.eat(b'"')?;
        }
        let start = self.at;
        let len = string_end(&bytes[start..])?;
        if bytes[start + len] != b'"' {
            return None;
        }
        self.at = start + len + 1;
        // Both ends sit next to an ASCII quote: a character boundary.
        self.text.get(start..start + len)
    }

    /// The text of a JSON number, checked against the grammar.
    #[inline]
    fn number(&mut self) -> Option<&'a str> {
        self.peek()?;
        let bytes = self.bytes();
        let start = self.at;
        let mut i = start;
        let digits = |i: &mut usize| {
            let from = *i;
            while bytes.get(*i).is_some_and(u8::is_ascii_digit) {
                *i += 1;
            }
            *i > from
        };
        if bytes.get(i) == Some(&b'-') {
            i += 1;
        }
        match bytes.get(i) {
            Some(b'0') => i += 1,
            Some(b'1'..=b'9') => {
                digits(&mut i);
            }
            _ => return None,
        }
        if bytes.get(i) == Some(&b'.') {
            i += 1;
            if !digits(&mut i) {
                return None;
            }
        }
        if matches!(bytes.get(i), Some(b'e' | b'E')) {
            i += 1;
            if matches!(bytes.get(i), Some(b'+' | b'-')) {
                i += 1;
            }
            if !digits(&mut i) {
                return None;
            }
        }
        self.at = i;
        self.text.get(start..i)
    }

    /// `text` exactly, next (no whitespace before it): for venues that
    /// always write a message's keys in one layout.
    // Inlined, so a constant `text` is compared in place, not by a call.
    #[inline(always)]
    pub(crate) fn literal(&mut self, text: &str) -> Option<()> {
        self.bytes()[self.at..]
            .starts_with(text.as_bytes())
            .then(|| self.at += text.len())
    }

    /// `key` exactly, next (as [`Scan::literal`]), then the value `read`
    /// reads: one key of a fixed layout and its value.
    #[inline(always)]
    pub(crate) fn after<T>(&mut self, key: &str, read: impl FnOnce(&mut Self) -> Option<T>) -> Option<T> {
        self.literal(key)?;
        read(self)
    }

    /// Whether an object comes next.
    pub(crate) fn at_object(&mut self) -> Option<bool> {
        Some(self.peek()? == b'{')
    }

    /// Whether a string comes next.
    pub(crate) fn at_string(&mut self) -> Option<bool> {
        Some(self.peek()? == b'"')
    }

    /// `null` as `Some(None)`, else the value `read` reads.
    pub(crate) fn nullable<T>(&mut self, read: impl FnOnce(&mut Self) -> Option<T>) -> Option<Option<T>> {
        if self.peek()? == b'n' {
            return self.bytes()[self.at..].starts_with(b"null").then(|| {
                self.at += 4;
                None
            });
        }
        read(self).map(Some)
    }

    /// A JSON number's text.
    pub(crate) fn json_number(&mut self) -> Option<super::JsonNumber<'a>> {
        self.number().map(super::JsonNumber)
    }

    /// An integer that fits `u64` (no sign, fraction or exponent).
    pub(crate) fn u64(&mut self) -> Option<u64> {
        self.peek()?;
        self.digits()
    }

    /// An integer that fits `i64` (no fraction, no exponent).
    pub(crate) fn i64(&mut self) -> Option<i64> {
        self.peek()?;
        if self.bytes().get(self.at) == Some(&b'-') {
            self.at += 1;
            // serde_json reads `-0` as a float, so it is no integer.
            let magnitude = self.digits().filter(|m| *m > 0)?;
            return 0i64.checked_sub_unsigned(magnitude);
        }
        i64::try_from(self.digits()?).ok()
    }

    /// The digits of an integer read as they are scanned: `None` for a
    /// leading zero before another digit, a fraction or exponent after
    /// them, or a value past `u64`.
    #[inline]
    fn digits(&mut self) -> Option<u64> {
        let bytes = self.bytes();
        let start = self.at;
        let mut value = 0u64;
        let mut i = start;
        while let Some(&b) = bytes.get(i) {
            if !b.is_ascii_digit() {
                break;
            }
            // Nineteen digits always fit; past them the value is read again,
            // checked.
            value = value.wrapping_mul(10).wrapping_add(u64::from(b - b'0'));
            i += 1;
        }
        let len = i - start;
        if len > 19 {
            value = bytes[start..i]
                .iter()
                .try_fold(0u64, |v, b| v.checked_mul(10)?.checked_add(u64::from(b - b'0')))?;
        }
        if len == 0 || (len > 1 && bytes[start] == b'0') || matches!(bytes.get(i), Some(b'.' | b'e' | b'E')) {
            return None;
        }
        self.at = i;
        Some(value)
    }

    pub(crate) fn bool(&mut self) -> Option<bool> {
        self.peek()?;
        let rest = &self.bytes()[self.at..];
        if rest.starts_with(b"true") {
            self.at += 4;
            Some(true)
        } else if rest.starts_with(b"false") {
            self.at += 5;
            Some(false)
        } else {
            None
        }
    }

    /// Skips any value, checking its syntax.
    pub(crate) fn skip(&mut self) -> Option<()> {
        self.skip_at(0)
    }

    fn skip_at(&mut self, depth: u32) -> Option<()> {
        if depth > MAX_DEPTH {
            return None;
        }
        match self.peek()? {
            b'"' => self.str().map(drop),
            b'{' => self.object(|s, _| s.skip_at(depth + 1)),
            b'[' => self.array(|s| s.skip_at(depth + 1)),
            b't' | b'f' => self.bool().map(drop),
            b'n' => self.nullable(|_| None::<()>).map(drop),
            _ => self.number().map(drop),
        }
    }

    /// `[a, b, …]` with exactly `N` strings.
    pub(crate) fn tuple<const N: usize>(&mut self) -> Option<[&'a str; N]> {
        let mut tuple = [""; N];
        let mut n = 0;
        self.array(|s| {
            *tuple.get_mut(n)? = s.str()?;
            n += 1;
            Some(())
        })?;
        (n == N).then_some(tuple)
    }

    /// `[[a, b], …]` (or tuples of another length) of strings.
    pub(crate) fn tuples<const N: usize>(&mut self) -> Option<Vec<[&'a str; N]>> {
        let mut tuples = Vec::new();
        self.array(|s| {
            tuples.push(s.tuple()?);
            Some(())
        })?;
        Some(tuples)
    }

    /// `[[price, size], …]` as book levels, each number checked as the
    /// venue parsers check it (`side` names them in a refusal, which is
    /// left to serde's path to make).
    pub(crate) fn levels(&mut self, side: &'static str) -> Option<Vec<moat_common_types::model::Level>> {
        let mut levels = Vec::new();
        self.array(|scan| {
            let [p, q] = scan.tuple()?;
            levels.push(moat_common_types::model::Level {
                price: super::price(side, p).ok()?,
                qty: super::qty(side, q).ok()?,
            });
            Some(())
        })?;
        Some(levels)
    }
}

/// Where the first quote, backslash or control character of `bytes` is:
/// eight bytes at a time while they last (the bit tricks of Hacker's
/// Delight, as serde_json does), then one at a time.
#[inline]
fn string_end(bytes: &[u8]) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let mut at = 0;
    while let Some(chunk) = bytes.get(at..at + 8) {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let w = u64::from_le_bytes(word);
        let quote = w ^ (ONES * u64::from(b'"'));
        let backslash = w ^ (ONES * u64::from(b'\\'));
        // A zero byte in `quote` or `backslash`, or a byte below 0x20 in `w`:
        // the lowest flagged byte is exact (higher ones may be false).
        let found = (quote.wrapping_sub(ONES) & !quote
            | backslash.wrapping_sub(ONES) & !backslash
            | w.wrapping_sub(ONES * 0x20) & !w)
            & HIGH;
        if found != 0 {
            return Some(at + (found.trailing_zeros() / 8) as usize);
        }
        at += 8;
    }
    bytes[at..]
        .iter()
        .position(|&b| b == b'"' || b == b'\\' || b < 0x20)
        .map(|i| at + i)
}

/// `text` read by `scan`, or by serde where the scanner leaves it (serde
/// then gives the answer, a refusal included).
pub(crate) fn or_serde<'a, T: serde::Deserialize<'a>>(
    text: &'a str,
    scan: impl FnOnce(&'a str) -> Option<T>,
) -> Result<T, super::Reject> {
    match scan(text) {
        Some(value) => Ok(value),
        None => super::json(text),
    }
}

/// A field read once: a second one is a duplicate key, which serde refuses.
pub(crate) fn once<T>(slot: &mut Option<T>, value: Option<T>) -> Option<()> {
    if slot.is_some() {
        return None;
    }
    *slot = Some(value?);
    Some(())
}

/// Reads `text` as one JSON value with [`Scan`] and panics if serde_json
/// refuses it or reads it otherwise: what the scanner reads, serde reads
/// the same (the scanner may leave more to serde). For the `scan_json`
/// fuzz target.
#[doc(hidden)]
pub fn check_against_serde(text: &str) {
    let mut scan = Scan::new(text);
    let Some(scanned) = value(&mut scan, 0).filter(|_| scan.end().is_some()) else {
        return;
    };
    let serde: serde_json::Value =
        serde_json::from_str(text).unwrap_or_else(|e| panic!("the scanner read {text:?}, serde refuses it: {e}"));
    assert_eq!(scanned, serde, "{text:?}");
}

/// `text` read by the integer readers as serde reads it as an integer.
fn check_integers(text: &str) {
    assert_eq!(
        Scan::new(text).i64(),
        serde_json::from_str::<i64>(text).ok(),
        "i64 {text}"
    );
    assert_eq!(
        Scan::new(text).u64(),
        serde_json::from_str::<u64>(text).ok(),
        "u64 {text}"
    );
}

/// Any value as [`check_against_serde`] reads it, each number read by the
/// scanner's integer readers too (checked against serde's).
fn value(scan: &mut Scan<'_>, depth: u32) -> Option<serde_json::Value> {
    use serde_json::Value;
    if depth > MAX_DEPTH {
        return None;
    }
    match scan.peek()? {
        b'"' => scan.str().map(|s| Value::String(s.to_owned())),
        b'{' => {
            let mut map = serde_json::Map::new();
            scan.object(|scan, key| {
                let v = value(scan, depth + 1)?;
                map.insert(key.to_owned(), v);
                Some(())
            })?;
            Some(Value::Object(map))
        }
        b'[' => {
            let mut items = Vec::new();
            scan.array(|scan| {
                items.push(value(scan, depth + 1)?);
                Some(())
            })?;
            Some(Value::Array(items))
        }
        b't' | b'f' => scan.bool().map(Value::Bool),
        b'n' => scan.nullable(|_| None::<()>).map(|_| Value::Null),
        _ => {
            let text = scan.number()?;
            check_integers(text);
            serde_json::from_str(text).ok()
        }
    }
}

/// The frames received in a recording of `shared/fixtures/exchanges` (or
/// `MOAT_EXCHANGE_FIXTURES`); none, with a note, when it is not there.
#[cfg(test)]
pub(crate) fn recorded_frames(name: &str) -> Vec<String> {
    let dir = std::env::var_os("MOAT_EXCHANGE_FIXTURES").map_or_else(
        || std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/fixtures/exchanges"),
        std::path::PathBuf::from,
    );
    let Ok(text) = std::fs::read_to_string(dir.join(name)) else {
        eprintln!(
            "SKIPPED: no recording {name} in {} (set MOAT_EXCHANGE_FIXTURES)",
            dir.display()
        );
        return Vec::new();
    };
    text.lines()
        .filter_map(|line| match crate::recording::parse_line(line) {
            Some(crate::recording::Record::Received { payload, .. }) => Some(payload.to_owned()),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reader of `{"s": str, "n": u64, "b": bool, "l": levels}` built
    /// on [`Scan`], the way the venues use it.
    fn read(text: &str) -> Option<(&str, u64, bool, Vec<[&str; 2]>)> {
        let mut scan = Scan::new(text);
        let (mut s, mut n, mut b, mut l) = (None, None, None, None);
        scan.object(|scan, key| match key {
            "s" => once(&mut s, scan.str()),
            "n" => once(&mut n, scan.u64()),
            "b" => once(&mut b, scan.bool()),
            "l" => {
                let mut levels = Vec::new();
                scan.array(|scan| {
                    levels.push(scan.tuple()?);
                    Some(())
                })?;
                once(&mut l, Some(levels))
            }
            _ => scan.skip(),
        })?;
        scan.end()?;
        Some((s?, n?, b?, l?))
    }

    #[derive(serde::Deserialize, Debug, PartialEq)]
    struct Same<'a> {
        s: &'a str,
        n: u64,
        b: bool,
        #[serde(borrow)]
        l: Vec<[&'a str; 2]>,
    }

    #[test]
    fn values_read_as_serde_reads_them() {
        for text in [
            r#"{"a":[1,-2.5e3,null,"z",{},true,false],"b":{"c":"d"},"a":0}"#,
            r#"[18446744073709551615,-9223372036854775808,0.1,1E+2]"#,
            r#" "x" "#,
        ] {
            check_against_serde(text);
            let mut scan = Scan::new(text);
            assert!(value(&mut scan, 0).is_some(), "{text}");
        }
        // Not JSON, or left to serde: nothing to compare.
        for text in [r#"{"a":}"#, r#"["\n"]"#, "[1,]", "nul"] {
            check_against_serde(text);
        }
    }

    #[test]
    fn integers_read_as_serde_reads_them() {
        for text in [
            "0",
            "-0",
            "7",
            "-7",
            "9223372036854775807",
            "9223372036854775808",
            "-9223372036854775808",
            "-9223372036854775809",
            "18446744073709551615",
            "18446744073709551616",
            "00",
            "-01",
            "1.0",
            "1e2",
            "1E2",
            "-",
            "--1",
            "+1",
            "",
        ] {
            check_integers(text);
        }
    }

    #[test]
    fn string_ends_are_found_at_every_offset() {
        for len in 0..40 {
            for stop in [b'"', b'\\', b'\n', 0x1f, 0] {
                let mut text = vec![b'a'; len];
                text.push(stop);
                text.extend_from_slice(b"x\"y");
                assert_eq!(string_end(&text), Some(len), "{len} {stop}");
            }
            // Bytes at and above 0x20, and UTF-8, are never an end.
            let plain: Vec<u8> = (0..len)
                .map(|i| [b' ', b'~', 0x7f, 0xc3, 0xa9, b'!', b'#', b'['][i % 8])
                .collect();
            assert_eq!(string_end(&plain), None, "{len}");
        }
    }

    /// Levels are the levels their strings give, checked as `price` and
    /// `qty` check them, with the same scale and sign.
    #[test]
    fn levels_read_as_their_strings_read() {
        let texts = [
            r#"[["0.35130000","6195.00000000"],["0.3475","0"]]"#,
            r#" [ [ "1.5" , "2" ] ] "#,
            r#"[["1e3","1"],["1","2.5E-2"]]"#,
            r#"[["1","-0"],["1","-0.000"]]"#,
            r#"[["1","-1"]]"#,
            r#"[["0","1"]]"#,
            r#"[["-1","1"]]"#,
            r#"[["1.","1"]]"#,
            r#"[[".5","1"]]"#,
            r#"[["1.2.3","1"]]"#,
            r#"[["12345678901234567890","1"]]"#,
            r#"[["1234567890123456789","1"]]"#,
            r#"[["0.000000000000000001","18446744073709551615"]]"#,
            r#"[["\u0031","1"]]"#,
            r#"[["1","2","3"]]"#,
            r#"[["1"]]"#,
            r#"[[1.5,"2"]]"#,
            r#"[["01.50","2"]]"#,
            r#"[["1-","2"]]"#,
            r#"[]"#,
        ];
        for text in texts {
            let reference = serde_json::from_str::<Vec<(String, String)>>(text)
                .ok()
                .and_then(|levels| {
                    levels
                        .iter()
                        .map(|(p, q)| {
                            Some(moat_common_types::model::Level {
                                price: super::super::price("b", p).ok()?,
                                qty: super::super::qty("b", q).ok()?,
                            })
                        })
                        .collect::<Option<Vec<_>>>()
                });
            let scanned = Scan::new(text).levels("b");
            // Equal values with equal scale and sign: the text the encoder
            // writes is the same.
            let shown = |levels: &Vec<moat_common_types::model::Level>| {
                levels
                    .iter()
                    .map(|l| (l.price.to_string(), l.qty.to_string(), l.qty.is_sign_negative()))
                    .collect::<Vec<_>>()
            };
            if let Some(levels) = &scanned {
                assert_eq!(Some(shown(levels)), reference.as_ref().map(shown), "{text}");
            }
            // The scanner may leave an escape to serde, nothing else.
            if scanned.is_none() && !text.contains('\\') {
                assert_eq!(
                    reference, None,
                    "{text}: the strings give levels, the scanner read none"
                );
            }
        }
    }

    /// Whatever the scanner reads, serde reads the same; where serde
    /// refuses, the scanner refuses too (it may also refuse more, leaving
    /// those to serde).
    #[test]
    fn reads_only_what_serde_reads_and_the_same() {
        let texts = [
            r#"{"s":"BTCUSDT","n":12,"b":true,"l":[["1.5","2"]]}"#,
            r#" { "l" : [ ] , "b" : false , "n" : 0 , "s" : "" } "#,
            r#"{"x":{"y":[1,-2.5e3,null,"z",{}]},"s":"a","n":1,"b":true,"l":[]}"#,
            r#"{"s":"a","n":1,"b":true,"l":[],"s":"b"}"#,
            r#"{"s":"a\"b","n":1,"b":true,"l":[]}"#,
            r#"{"s":"a","n":1.0,"b":true,"l":[]}"#,
            r#"{"s":"a","n":-1,"b":true,"l":[]}"#,
            r#"{"s":"a","n":18446744073709551616,"b":true,"l":[]}"#,
            r#"{"s":"a","n":1,"b":true,"l":[["1","2","3"]]}"#,
            r#"{"s":"a","n":1,"b":true,"l":[["1"]]}"#,
            r#"{"s":"a","n":1,"b":true,"l":[]}x"#,
            r#"{"s":"a","n":1,"b":true,"l":[],}"#,
            r#"{"s":"a","n":01,"b":true,"l":[]}"#,
            r#"{"s":"a","n":0,"b":true,"l":[]}"#,
            r#"{"s":"a","n":18446744073709551615,"b":true,"l":[]}"#,
            r#"{"s":"a","n":1e3,"b":true,"l":[]}"#,
            r#"{"s":"a","n":-0,"b":true,"l":[]}"#,
            r#"{"s":"a","n":+1,"b":true,"l":[]}"#,
            r#"{"s":"a","n":1,"b":tru,"l":[]}"#,
            r#"{"s":"a","n":1,"b":true}"#,
            r#"{"s":"a","n":1,"b":true,"l":[],"x":[1,]}"#,
            r#"{"s":"a","n":1,"b":true,"l":[],"x":-}"#,
            r#"{"s":"a","n":1,"b":true,"l":[],"x":1.}"#,
            r#"{"s":"a","n":1,"b":true,"l":[],"x":nul}"#,
            "{\"s\":\"a\tb\",\"n\":1,\"b\":true,\"l\":[]}",
            r#"{"s":"é","n":1,"b":true,"l":[]}"#,
            r#"[]"#,
            r#""#,
        ];
        let mut read_by_scan = 0;
        for text in texts {
            let serde = serde_json::from_str::<Same<'_>>(text).ok();
            match read(text) {
                Some((s, n, b, l)) => {
                    read_by_scan += 1;
                    assert_eq!(serde, Some(Same { s, n, b, l }), "{text}");
                }
                None => assert!(serde.is_none(), "{text}: serde reads it, the scanner should too"),
            }
        }
        assert_eq!(read_by_scan, 6, "the valid texts are read");
    }
}
