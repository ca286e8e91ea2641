//! The strategy-side commands: everything goes through the gateway with the
//! strategy's token.

use std::io::{Read, Write};

use anyhow::{Context, anyhow};
use moat_proto::gateway::v1 as pb;
use moat_proto::gateway::v1::market_service_client::MarketServiceClient;
use moat_proto::gateway::v1::rpc_service_client::RpcServiceClient;
use moat_proto::gateway::v1::state_service_client::StateServiceClient;
use serde_json::{Value, json};

use crate::gateway::{authed, connect, explain};
use crate::output::{duration_ms, json, table, time};
use crate::{Global, StateCommand};

pub async fn price(global: &Global, tokens: Vec<String>, quote: String, chain: Option<String>) -> anyhow::Result<()> {
    let mut client = MarketServiceClient::new(connect(global).await?);
    let requests: Vec<pb::GetPriceRequest> = tokens
        .into_iter()
        .map(|token| pb::GetPriceRequest {
            token,
            quote: quote.clone(),
            chain: chain.clone(),
        })
        .collect();
    let prices = if requests.len() == 1 {
        let request = requests.into_iter().next().expect("one request");
        vec![
            client
                .get_price(authed(global, request)?)
                .await
                .map_err(explain)?
                .into_inner(),
        ]
    } else {
        client
            .get_prices(authed(global, pb::GetPricesRequest { requests })?)
            .await
            .map_err(explain)?
            .into_inner()
            .prices
    };
    if global.json {
        let items: Vec<Value> = prices.iter().map(price_json).collect();
        json(&if items.len() == 1 {
            items[0].clone()
        } else {
            Value::Array(items)
        });
        return Ok(());
    }
    let rows: Vec<Vec<String>> = prices
        .iter()
        .map(|p| {
            vec![
                format!("{}/{}", p.token, p.quote),
                p.price.clone(),
                time(p.ts_ms),
                p.sources
                    .iter()
                    .map(|s| s.exchange.as_str())
                    .collect::<Vec<_>>()
                    .join(","),
                format!("{:.2}", p.confidence),
                if p.stale { "STALE".into() } else { "fresh".into() },
                p.outliers
                    .iter()
                    .map(|s| s.exchange.as_str())
                    .collect::<Vec<_>>()
                    .join(","),
                p.failed
                    .iter()
                    .map(|f| format!("{} ({})", f.exchange, f.reason))
                    .collect::<Vec<_>>()
                    .join(", "),
            ]
        })
        .collect();
    table(
        &[
            "PAIR",
            "PRICE",
            "TIME (UTC)",
            "SOURCES",
            "CONFIDENCE",
            "AGE",
            "OUTLIERS",
            "FAILED",
        ],
        &rows,
    );
    Ok(())
}

fn price_json(p: &pb::Price) -> Value {
    let source =
        |s: &pb::PriceSource| json!({"exchange": s.exchange, "symbol": s.symbol, "price": s.price, "ts_ms": s.ts_ms});
    json!({
        "token": p.token, "quote": p.quote, "price": p.price, "ts_ms": p.ts_ms,
        "sources": p.sources.iter().map(source).collect::<Vec<_>>(),
        "outliers": p.outliers.iter().map(source).collect::<Vec<_>>(),
        "failed": p.failed.iter().map(|f| json!({"exchange": f.exchange, "symbol": f.symbol, "reason": f.reason})).collect::<Vec<_>>(),
        "confidence": p.confidence, "stale": p.stale,
    })
}

pub async fn book(global: &Global, exchange: String, symbol: String, depth: u32) -> anyhow::Result<()> {
    let mut client = MarketServiceClient::new(connect(global).await?);
    let book = client
        .get_order_book(authed(
            global,
            pb::GetOrderBookRequest {
                exchange,
                symbol,
                depth,
            },
        )?)
        .await
        .map_err(explain)?
        .into_inner();
    if global.json {
        let levels = |ls: &[moat_proto::marketdata::v1::Level]| -> Vec<Value> {
            ls.iter().map(|l| json!([l.price, l.qty])).collect()
        };
        json(&json!({
            "exchange": book.exchange, "symbol": book.symbol, "sequence": book.sequence,
            "ts_ms": book.ts_ms, "valid": book.valid,
            "bids": levels(&book.bids), "asks": levels(&book.asks),
        }));
        return Ok(());
    }
    println!(
        "{} {}  sequence {}  {}  {}",
        book.exchange,
        book.symbol,
        book.sequence,
        time(book.ts_ms),
        if book.valid { "valid" } else { "INVALID (resyncing)" }
    );
    let rows: Vec<Vec<String>> = (0..book.bids.len().max(book.asks.len()))
        .map(|i| {
            let cell = |ls: &[moat_proto::marketdata::v1::Level], f: fn(&moat_proto::marketdata::v1::Level) -> &str| {
                ls.get(i).map(|l| f(l).to_owned()).unwrap_or_default()
            };
            vec![
                cell(&book.bids, |l| &l.qty),
                cell(&book.bids, |l| &l.price),
                cell(&book.asks, |l| &l.price),
                cell(&book.asks, |l| &l.qty),
            ]
        })
        .collect();
    table(&["BID QTY", "BID", "ASK", "ASK QTY"], &rows);
    Ok(())
}

pub async fn candles(
    global: &Global,
    exchange: String,
    symbol: String,
    interval: String,
    since: &str,
) -> anyhow::Result<()> {
    let to_ms = moat_common_types::now_ms();
    let from_ms = to_ms - duration_ms(since)?;
    let mut client = MarketServiceClient::new(connect(global).await?);
    let candles = client
        .get_candles(authed(
            global,
            pb::GetCandlesRequest {
                exchange,
                symbol,
                interval,
                from_ms,
                to_ms,
            },
        )?)
        .await
        .map_err(explain)?
        .into_inner()
        .candles;
    if global.json {
        let items: Vec<Value> = candles
            .iter()
            .map(|c| {
                json!({"open_time_ms": c.open_time_ms, "open": c.open, "high": c.high, "low": c.low,
                       "close": c.close, "volume": c.volume, "trades": c.trades})
            })
            .collect();
        json(&Value::Array(items));
        return Ok(());
    }
    let rows: Vec<Vec<String>> = candles
        .iter()
        .map(|c| {
            vec![
                time(c.open_time_ms),
                c.open.clone(),
                c.high.clone(),
                c.low.clone(),
                c.close.clone(),
                c.volume.clone(),
                c.trades.to_string(),
            ]
        })
        .collect();
    table(
        &["OPEN TIME (UTC)", "OPEN", "HIGH", "LOW", "CLOSE", "VOLUME", "TRADES"],
        &rows,
    );
    Ok(())
}

pub async fn rpc(global: &Global, chain: String, method: String, params: Option<String>) -> anyhow::Result<()> {
    let params_json = params.unwrap_or_default();
    if !params_json.is_empty() {
        let parsed: Value = serde_json::from_str(&params_json).context("params are not JSON")?;
        anyhow::ensure!(
            parsed.is_array(),
            "params must be a JSON array, e.g. '[\"latest\", false]'"
        );
    }
    let mut client = RpcServiceClient::new(connect(global).await?);
    let answer = client
        .call(authed(
            global,
            pb::RpcRequest {
                chain,
                method,
                params_json,
            },
        )?)
        .await
        .map_err(explain)?
        .into_inner();
    if let Some(error) = answer.error {
        if global.json {
            json(&json!({"error": {"code": error.code, "message": error.message}}));
        }
        return Err(anyhow!("the node answered error {}: {}", error.code, error.message));
    }
    let result: Value = serde_json::from_str(&answer.result_json).unwrap_or(Value::String(answer.result_json));
    if global.json {
        json(&json!({ "result": result }));
    } else {
        match &result {
            Value::String(s) => println!("{s}"),
            other => json(other),
        }
    }
    Ok(())
}

pub async fn state(global: &Global, command: StateCommand) -> anyhow::Result<()> {
    let mut client = StateServiceClient::new(connect(global).await?);
    match command {
        StateCommand::Get { version } => {
            let state = client
                .load_state(authed(
                    global,
                    pb::LoadStateRequest {
                        version,
                        strategy_id: None,
                    },
                )?)
                .await
                .map_err(explain)?
                .into_inner();
            if global.json {
                json(&json!({
                    "version": state.version, "sha256": state.sha256, "saved_at_ms": state.saved_at_ms,
                    "data": String::from_utf8_lossy(&state.data),
                }));
            } else {
                std::io::stdout().write_all(&state.data)?;
            }
        }
        StateCommand::Put {
            data,
            file,
            expected_version,
        } => {
            let data = match (data, file) {
                (Some(text), _) => text.into_bytes(),
                (None, Some(path)) if path.as_os_str() == "-" => {
                    let mut buf = Vec::new();
                    std::io::stdin().read_to_end(&mut buf)?;
                    buf
                }
                (None, Some(path)) => std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?,
                (None, None) => anyhow::bail!("give the state as an argument, or --file PATH (- for stdin)"),
            };
            let expected_version = match expected_version {
                Some(v) => v,
                None => current_version(global, &mut client).await?,
            };
            let saved = client
                .save_state(authed(
                    global,
                    pb::SaveStateRequest {
                        data: data.into(),
                        expected_version,
                        ..Default::default()
                    },
                )?)
                .await
                .map_err(explain)?
                .into_inner();
            if global.json {
                json(&json!({"version": saved.version, "sha256": saved.sha256}));
            } else {
                println!("saved version {} (sha256 {})", saved.version, saved.sha256);
            }
        }
        StateCommand::Rm => {
            let deleted = client
                .delete_state(authed(global, pb::DeleteStateRequest { strategy_id: None })?)
                .await
                .map_err(explain)?
                .into_inner();
            if global.json {
                json(&json!({"deleted_versions": deleted.deleted_versions}));
            } else {
                println!("deleted {} versions", deleted.deleted_versions);
            }
        }
    }
    Ok(())
}

/// The latest saved version, 0 when there is none.
async fn current_version(
    global: &Global,
    client: &mut StateServiceClient<tonic::transport::Channel>,
) -> anyhow::Result<u64> {
    match client
        .load_state(authed(
            global,
            pb::LoadStateRequest {
                version: 0,
                strategy_id: None,
            },
        )?)
        .await
    {
        Ok(state) => Ok(state.into_inner().version),
        Err(status) if status.code() == tonic::Code::NotFound => Ok(0),
        Err(status) => Err(explain(status)),
    }
}
