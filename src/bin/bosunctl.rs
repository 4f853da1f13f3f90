//! `bosunctl`: a command-line client for bosun and any Kata-protocol agent.
//!
//! Exit codes: 0 success, 1 the call failed (the ttrpc code and message are
//! printed), 2 usage error.

use std::process::ExitCode;
use std::time::Duration;

use bosun::client::Client;
use bosun::transport::Address;

const USAGE: &str = "bosunctl: client for bosun and other Kata-protocol agents

USAGE:
    bosunctl [--addr ADDR] [--timeout SECS] [--json] COMMAND

COMMANDS:
    check      Health.Check: prints SERVING when the agent is up
    version    Health.Version: the agent's version and protocol version

OPTIONS:
    --addr ADDR      unix:///path, unix://@name, vsock://CID:PORT or
                     hvsock:///path/to/uds:PORT (hybrid vsock); env BOSUNCTL_ADDR
    --timeout SECS   bound on connecting and on each call (default 5)
    --json           print results as JSON
    -h, --help       this text

EXIT CODES: 0 ok, 1 call failed, 2 usage
";

struct Opts {
    addr: Address,
    timeout: Duration,
    json: bool,
    command: String,
}

fn parse(args: &[String]) -> Result<Option<Opts>, String> {
    let mut addr = std::env::var("BOSUNCTL_ADDR").ok();
    let mut timeout = Duration::from_secs(5);
    let mut json = false;
    let mut command = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let (name, inline) = match a.split_once('=') {
            Some((n, v)) if n.starts_with("--") => (n, Some(v.to_string())),
            _ => (a.as_str(), None),
        };
        let mut value = |n: &str| {
            inline
                .clone()
                .or_else(|| it.next().cloned())
                .ok_or(format!("{n} needs a value"))
        };
        match name {
            "-h" | "--help" | "help" => return Ok(None),
            "--addr" => addr = Some(value("--addr")?),
            "--timeout" => {
                let v = value("--timeout")?;
                let secs: f64 = v
                    .parse()
                    .ok()
                    .filter(|s: &f64| *s > 0.0 && *s <= 3600.0)
                    .ok_or(format!("--timeout {v:?}: expected seconds, >0 and <= 3600"))?;
                timeout = Duration::from_secs_f64(secs);
            }
            "--json" => json = true,
            c if !c.starts_with('-') && command.is_none() => command = Some(c.to_string()),
            other => return Err(format!("unexpected argument {other:?}")),
        }
    }
    let command = command.ok_or("no command given")?;
    let addr = addr.ok_or("no agent address: pass --addr or set BOSUNCTL_ADDR")?;
    let addr = Address::parse(&addr)
        .and_then(|a| a.check_dialable().map(|_| a))
        .map_err(|e| e.to_string())?;
    Ok(Some(Opts {
        addr,
        timeout,
        json,
        command,
    }))
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let opts = match parse(&args) {
        Ok(Some(o)) => o,
        Ok(None) => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("bosunctl: {e}\nRun `bosunctl --help` for usage.");
            return ExitCode::from(2);
        }
    };
    if !matches!(opts.command.as_str(), "check" | "version") {
        eprintln!(
            "bosunctl: unknown command {:?}\nRun `bosunctl --help` for usage.",
            opts.command
        );
        return ExitCode::from(2);
    }
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("bosunctl: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match rt.block_on(run(&opts)) {
        Ok(out) => {
            println!("{out}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("bosunctl: {} failed: {e}", opts.command);
            ExitCode::from(1)
        }
    }
}

async fn run(o: &Opts) -> Result<String, String> {
    let c = Client::connect(&o.addr, o.timeout).await.map_err(|e| e.to_string())?;
    match o.command.as_str() {
        "check" => {
            let r = c.check().await.map_err(describe)?;
            let status = format!("{:?}", r.status.enum_value_or_default());
            Ok(if o.json {
                serde_json::json!({ "status": status }).to_string()
            } else {
                status
            })
        }
        "version" => {
            let r = c.version().await.map_err(describe)?;
            Ok(if o.json {
                serde_json::json!({ "agent_version": r.agent_version, "grpc_version": r.grpc_version }).to_string()
            } else {
                format!("agent {} (protocol {})", r.agent_version, r.grpc_version)
            })
        }
        _ => unreachable!("checked in main"),
    }
}

/// `CODE: message` for a failed call, as the issue trackers quote it.
fn describe(e: ttrpc::Error) -> String {
    match e {
        ttrpc::Error::RpcStatus(s) => format!("{:?}: {}", s.code(), s.message()),
        other => other.to_string(),
    }
}
