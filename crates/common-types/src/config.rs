//! Layered configuration: built-in defaults < `config/<service>.toml` <
//! environment `MOAT_<SERVICE>__<SECTION>__<KEY>`.
//!
//! Unknown keys and ill-typed values are rejected with one line that names
//! the key, the value and what was expected, and where the value came from.
//! Config structs use `#[serde(deny_unknown_fields)]` and implement
//! [`Validate`] for checks that types alone cannot express.

use std::path::{Path, PathBuf};

use figment::Figment;
use figment::error::Kind;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Exit status of a service started with bad configuration (`EX_USAGE`).
pub const EXIT_BAD_CONFIG: i32 = 64;

/// A configuration problem, displayed as a single line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid configuration: {0}")]
pub struct ConfigError(pub String);

impl ConfigError {
    /// A value that has the right type but is not acceptable.
    pub fn invalid(key: &str, value: impl std::fmt::Display, expected: &str) -> ConfigError {
        ConfigError(format!("key `{key}` = {value}: expected {expected}"))
    }

    /// A duration key that holds `value`, as the configuration spells it
    /// (`"1m 30s"`).
    pub fn invalid_duration(key: &str, value: std::time::Duration, expected: &str) -> ConfigError {
        ConfigError::invalid(
            key,
            format!("\"{}\"", humantime_serde::re::humantime::format_duration(value)),
            expected,
        )
    }
}

/// Checks on values beyond what their types express.
pub trait Validate {
    fn validate(&self) -> Result<(), ConfigError> {
        Ok(())
    }
}

/// Where a service's configuration comes from.
#[derive(Debug, Clone)]
pub struct Sources {
    /// Service name as in `config/<service>.toml`, e.g. `storage-writer`.
    pub service: String,
    /// The TOML file; `None` uses `config/<service>.toml` when it exists.
    pub file: Option<PathBuf>,
    /// Whether `file` must exist (true when the user named it).
    pub file_required: bool,
}

impl Sources {
    /// The default sources of `service`, honouring `MOAT_CONFIG_DIR` and
    /// `MOAT_<SERVICE>_CONFIG` (a file path) when set.
    pub fn for_service(service: &str) -> Sources {
        let explicit = std::env::var_os(format!("{}_CONFIG", env_prefix(service).trim_end_matches('_')));
        match explicit {
            Some(path) => Sources {
                service: service.to_owned(),
                file: Some(PathBuf::from(path)),
                file_required: true,
            },
            None => {
                let dir = std::env::var_os("MOAT_CONFIG_DIR").map_or_else(|| PathBuf::from("config"), PathBuf::from);
                Sources {
                    service: service.to_owned(),
                    file: Some(dir.join(format!("{service}.toml"))),
                    file_required: false,
                }
            }
        }
    }

    pub fn with_file(mut self, file: impl Into<PathBuf>) -> Sources {
        self.file = Some(file.into());
        self.file_required = true;
        self
    }
}

/// Parses a binary's command line: `--help` and `--version` print and exit
/// 0; a usage error prints clap's message and exits [`EXIT_BAD_CONFIG`]
/// (64, `EX_USAGE`), as a bad configuration does.
pub fn parse_args<T: clap::Parser>() -> T {
    match T::try_parse() {
        Ok(args) => args,
        Err(error) if error.exit_code() == 0 => error.exit(),
        Err(error) => {
            let _ = error.print();
            std::process::exit(EXIT_BAD_CONFIG);
        }
    }
}

/// The `--config PATH` option every service binary takes (flattened into
/// its clap arguments).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ConfigArgs {
    /// TOML configuration file; it must exist when named. Without it,
    /// `MOAT_<SERVICE>_CONFIG` or `config/<service>.toml` (under
    /// `MOAT_CONFIG_DIR`) is read when present. `MOAT_<SERVICE>__<SECTION>__<KEY>`
    /// variables override the file.
    #[arg(long, value_name = "PATH", global = true)]
    pub config: Option<PathBuf>,
}

impl ConfigArgs {
    /// Where `service`'s configuration comes from.
    pub fn sources(&self, service: &str) -> Sources {
        let sources = Sources::for_service(service);
        match &self.config {
            Some(path) => sources.with_file(path),
            None => sources,
        }
    }
}

/// `storage-writer` → `MOAT_STORAGE_WRITER__`.
pub fn env_prefix(service: &str) -> String {
    format!("MOAT_{}__", service.to_ascii_uppercase().replace('-', "_"))
}

/// Loads and validates the configuration of a service.
pub fn load<T>(sources: &Sources) -> Result<T, ConfigError>
where
    T: DeserializeOwned + Serialize + Default + Validate,
{
    let mut figment = Figment::from(Serialized::defaults(T::default()));
    if let Some(file) = &sources.file {
        if file.exists() {
            figment = figment.merge(Toml::file_exact(file));
        } else if sources.file_required {
            return Err(ConfigError(format!("config file {} does not exist", file.display())));
        }
    }
    figment = figment.merge(Env::prefixed(&env_prefix(&sources.service)).split("__"));
    extract(&figment, &sources.service)
}

/// The configuration of `service` from TOML text over the defaults, without
/// files or environment: what the config fuzz target and tests feed.
pub fn load_toml_str<T>(service: &str, toml: &str) -> Result<T, ConfigError>
where
    T: DeserializeOwned + Serialize + Default + Validate,
{
    extract(
        &Figment::from(Serialized::defaults(T::default())).merge(Toml::string(toml)),
        service,
    )
}

fn extract<T>(figment: &Figment, service: &str) -> Result<T, ConfigError>
where
    T: DeserializeOwned + Validate,
{
    let config: T = figment
        .extract()
        .map_err(|e| describe(figment, &env_prefix(service), e))?;
    config.validate()?;
    Ok(config)
}

/// Turns figment's error into one line naming key, value, expectation and source.
fn describe(figment: &Figment, prefix: &str, error: figment::Error) -> ConfigError {
    let Some(error) = error.into_iter().next() else {
        return ConfigError("unknown configuration error".into());
    };
    let origin = |keys: &[String]| -> String {
        match &error.metadata {
            Some(md) => match &md.source {
                Some(source) => format!(" (from {source})"),
                None if md.name.contains("environment") => {
                    let name = keys.join("__").to_ascii_uppercase();
                    format!(" (from environment variable {prefix}{name})")
                }
                None => String::new(),
            },
            None => String::new(),
        }
    };
    let key = error.path.join(".");
    let line = match &error.kind {
        Kind::UnknownField(field, expected) => {
            // figment's path already ends with the unknown field.
            let mut keys = error.path.clone();
            if keys.last() != Some(field) {
                keys.push(field.clone());
            }
            let full = keys.join(".");
            // Durations were once `<name>_ms` numbers; now `<name>` takes a
            // string with its unit.
            let renamed = field
                .strip_suffix("_ms")
                .filter(|name| expected.iter().any(|e| e == name))
                .map(|name| format!(" (durations are strings with a unit now: `{name} = \"30s\"`)"))
                .unwrap_or_default();
            format!(
                "unknown key `{full}`{}; expected one of: {}{renamed}",
                origin(&keys),
                expected.join(", ")
            )
        }
        Kind::InvalidType(actual, expected) | Kind::InvalidValue(actual, expected) => {
            let expected = if expected == "a duration" {
                "a duration with its unit, such as \"30s\", \"150ms\" or \"1m 30s\""
            } else if expected.starts_with("a nonzero ") {
                "a whole number above 0"
            } else {
                expected
            };
            format!("key `{key}` is {actual}{}: expected {expected}", origin(&error.path))
        }
        Kind::MissingField(field) => format!("missing key `{}`", join(&key, field)),
        Kind::Message(message) => {
            let value = figment
                .find_value(&key)
                .ok()
                .and_then(|v| v.into_string().or_else(|| Some(String::new())))
                .unwrap_or_default();
            if value.is_empty() {
                format!("key `{key}`{}: {message}", origin(&error.path))
            } else {
                format!("key `{key}` = \"{value}\"{}: {message}", origin(&error.path))
            }
        }
        other => format!("key `{key}`{}: {other}", origin(&error.path)),
    };
    ConfigError(one_line(&line))
}

/// TOML syntax errors come with a multi-line snippet of the file and a
/// caret; the position and the reason are kept, on one line.
fn one_line(message: &str) -> String {
    let is_snippet = |line: &str| {
        let t = line.trim_start();
        t.starts_with('|')
            || t.split_once(" |")
                .is_some_and(|(n, _)| n.bytes().all(|b| b.is_ascii_digit()))
    };
    message
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !is_snippet(l))
        .collect::<Vec<_>>()
        .join(": ")
}

fn join(parent: &str, field: &str) -> String {
    if parent.is_empty() {
        field.to_owned()
    } else {
        format!("{parent}.{field}")
    }
}

/// Loads the configuration or exits with [`EXIT_BAD_CONFIG`] after printing
/// the one-line reason: what every service `main` does.
pub fn load_or_exit<T>(sources: &Sources) -> T
where
    T: DeserializeOwned + Serialize + Default + Validate,
{
    match load(sources) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("moat-{}: {error}", sources.service);
            std::process::exit(EXIT_BAD_CONFIG);
        }
    }
}

/// Path helper for tests and tools: `config/<service>.toml` under `root`.
pub fn default_file(root: &Path, service: &str) -> PathBuf {
    root.join("config").join(format!("{service}.toml"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;
    use std::net::SocketAddr;

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    #[serde(deny_unknown_fields, default)]
    struct Http {
        listen: SocketAddr,
        #[serde(with = "humantime_serde")]
        timeout: std::time::Duration,
        retries: u64,
    }

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    #[serde(deny_unknown_fields, default)]
    struct Demo {
        http: Http,
        name: String,
    }

    impl Default for Http {
        fn default() -> Self {
            Http {
                listen: "0.0.0.0:9090".parse().unwrap(),
                timeout: std::time::Duration::from_secs(1),
                retries: 3,
            }
        }
    }

    impl Default for Demo {
        fn default() -> Self {
            Demo {
                http: Http::default(),
                name: "demo".into(),
            }
        }
    }

    impl Validate for Demo {
        fn validate(&self) -> Result<(), ConfigError> {
            if self.http.timeout.is_zero() {
                return Err(ConfigError::invalid_duration(
                    "http.timeout",
                    self.http.timeout,
                    "a timeout above 0",
                ));
            }
            Ok(())
        }
    }

    // figment's Jail closure type is fixed by figment.
    #[allow(clippy::result_large_err)]
    /// Loads `Demo` from a file holding `toml` with the given environment,
    /// inside a figment `Jail` (which serialises tests that touch the
    /// process environment and restores it afterwards).
    fn with(service: &str, toml: &str, env: &[(&str, &str)]) -> Result<Demo, ConfigError> {
        let mut result = None;
        figment::Jail::expect_with(|jail| {
            jail.create_file("demo.toml", toml)?;
            for (k, v) in env {
                jail.set_env(k, v);
            }
            let sources = Sources {
                service: service.to_owned(),
                file: Some(jail.directory().join("demo.toml")),
                file_required: true,
            };
            result = Some(load::<Demo>(&sources));
            Ok(())
        });
        result.expect("jail ran")
    }

    #[test]
    fn environment_overrides_the_file() {
        let demo = with(
            "demo-env",
            "name = \"x\"\n[http]\ntimeout = \"5s\"\n",
            &[("MOAT_DEMO_ENV__HTTP__TIMEOUT", "77ms")],
        )
        .unwrap();
        assert_eq!(demo.http.timeout, std::time::Duration::from_millis(77));
        assert_eq!(demo.name, "x");
    }

    #[test]
    fn bad_environment_value_names_the_variable() {
        let err = with("demo-env-bad", "", &[("MOAT_DEMO_ENV_BAD__HTTP__RETRIES", "abc")]).unwrap_err();
        assert!(err.0.contains("key `http.retries`"), "{err}");
        assert!(err.0.contains("MOAT_DEMO_ENV_BAD__HTTP__RETRIES"), "{err}");
        let err = with("demo-env-unit", "", &[("MOAT_DEMO_ENV_UNIT__HTTP__TIMEOUT", "90")]).unwrap_err();
        assert!(err.0.contains("key `http.timeout`"), "{err}");
        assert!(err.0.contains("MOAT_DEMO_ENV_UNIT__HTTP__TIMEOUT"), "{err}");
        let err = with("demo-env-unknown", "", &[("MOAT_DEMO_ENV_UNKNOWN__HTTP__PORT", "1")]).unwrap_err();
        assert!(err.0.contains("unknown key `http.port`"), "{err}");
    }

    #[test]
    fn defaults_apply_without_a_file() {
        let sources = Sources {
            service: "demo-none".into(),
            file: Some("/nonexistent/demo.toml".into()),
            file_required: false,
        };
        assert_eq!(load::<Demo>(&sources).unwrap(), Demo::default());
        let required = Sources {
            file_required: true,
            ..sources
        };
        assert!(load::<Demo>(&required).unwrap_err().0.contains("does not exist"));
    }

    #[test]
    fn file_overrides_defaults() {
        let demo = with("demo-file", "name = \"x\"\n[http]\ntimeout = \"1m 30s\"\n", &[]).unwrap();
        assert_eq!(demo.name, "x");
        assert_eq!(demo.http.timeout, std::time::Duration::from_secs(90));
        assert_eq!(demo.http.listen, Http::default().listen);
    }

    #[test]
    fn unknown_key_is_named_with_its_section() {
        let err = with("demo-unknown", "[http]\nlisten_port = 1\n", &[]).unwrap_err();
        assert!(err.0.contains("unknown key `http.listen_port`"), "{err}");
        assert!(err.0.contains("expected one of: listen, timeout, retries"), "{err}");
        assert!(err.0.contains("demo.toml"), "the file must be named: {err}");
    }

    #[test]
    fn a_duration_key_from_before_units_says_what_it_became() {
        let err = with("demo-renamed", "[http]\ntimeout_ms = 5000\n", &[]).unwrap_err();
        assert!(err.0.contains("unknown key `http.timeout_ms`"), "{err}");
        assert!(
            err.0.contains("`timeout = \"30s\"`"),
            "the new spelling must be shown: {err}"
        );
        // Any other unknown key gets no such hint.
        let err = with("demo-unrenamed", "[http]\nport_ms = 1\n", &[]).unwrap_err();
        assert!(!err.0.contains("durations"), "{err}");
    }

    #[test]
    fn ill_typed_value_names_key_value_and_expectation() {
        let err = with("demo-type", "[http]\nretries = \"soon\"\n", &[]).unwrap_err();
        assert!(err.0.contains("key `http.retries`"), "{err}");
        assert!(err.0.contains("\"soon\""), "the value must be named: {err}");
        assert!(err.0.contains("expected u64"), "{err}");
        // A duration needs its unit.
        for (service, value) in [
            ("demo-duration", "\"soon\""),
            ("demo-unitless", "\"90\""),
            ("demo-bare", "5"),
        ] {
            let err = with(service, &format!("[http]\ntimeout = {value}\n"), &[]).unwrap_err();
            assert!(err.0.contains("key `http.timeout` is "), "{err}");
            assert!(err.0.contains("such as \"30s\""), "{err}");
        }

        let err = with("demo-addr", "[http]\nlisten = \"nine\"\n", &[]).unwrap_err();
        assert!(err.0.contains("key `http.listen` = \"nine\""), "{err}");
    }

    #[test]
    fn validation_runs_after_loading() {
        let err = with("demo-validate", "[http]\ntimeout = \"0s\"\n", &[]).unwrap_err();
        assert_eq!(err.0, "key `http.timeout` = \"0s\": expected a timeout above 0");
    }

    #[test]
    fn a_named_config_file_is_required() {
        let named = ConfigArgs {
            config: Some("/x/w.toml".into()),
        };
        let sources = named.sources("storage-writer");
        assert_eq!(sources.file.as_deref(), Some(Path::new("/x/w.toml")));
        assert!(sources.file_required);
        let default = ConfigArgs::default().sources("demo-unnamed");
        assert!(!default.file_required, "{default:?}");
    }

    #[test]
    fn a_toml_syntax_error_is_one_line_with_its_position() {
        let err = load_toml_str::<Demo>("demo", "[http]\ntimeout = \n").unwrap_err();
        assert!(!err.0.contains('\n'), "{err}");
        assert!(err.0.contains("line 2"), "the position must be named: {err}");
        let err = with("demo-syntax", "name = 'unclosed\n", &[]).unwrap_err();
        assert!(!err.0.contains('\n'), "{err}");
        assert!(err.0.contains("line 1"), "{err}");
    }

    #[test]
    fn toml_text_loads_over_the_defaults() {
        let demo = load_toml_str::<Demo>("demo", "name = \"x\"\n").unwrap();
        assert_eq!(demo.name, "x");
        assert_eq!(demo.http, Http::default());
        let err = load_toml_str::<Demo>("demo", "[http]\ntimeout = \"0ms\"\n").unwrap_err();
        assert_eq!(err.0, "key `http.timeout` = \"0s\": expected a timeout above 0");
    }

    #[test]
    fn prefixes_follow_the_service_name() {
        assert_eq!(env_prefix("storage-writer"), "MOAT_STORAGE_WRITER__");
        assert_eq!(env_prefix("gateway"), "MOAT_GATEWAY__");
    }
}
