//! `bosunctl`: a command-line client for bosun and any Kata-protocol agent.
//!
//! Exit codes: 0 success, 1 the call failed (the ttrpc code and message are
//! printed), 2 usage error; `run`, `exec` and `wait` exit with the
//! process's status.

mod args;
mod pod;

use std::process::ExitCode;
use std::time::Duration;

use args::Args;
use bosun::transport::Address;
use bosun_client::Client;

const USAGE: &str = "bosunctl: client for bosun and other Kata-protocol agents

USAGE:
    bosunctl [--addr ADDR] [--timeout SECS] [--json] COMMAND [ARGS]

COMMANDS:
    check                                   Health.Check: prints SERVING
    version                                 Health.Version
    sandbox create [--id ID] [--hostname H] [--pidns] [--dns LINE]... [--kernel-module NAME[,KEY=VALUE...]]... [--hook-path DIR]
    sandbox destroy [--verbose]             tear the whole pod down
    create ID [--rootfs DIR | --bundle DIR | --image REF] [--pause] [--annotation K=V]... [-- CMD...]
                                            --bundle: an OCI bundle (config.json)
                                            --pause: the pause container (no
                                            rootfs: bosun's built-in pause)
                                            --image: pulled by the guest, sent
                                            as runtime-rs does (image_guest_pull;
                                            --image pause --pause: the sandbox's)
    start ID
    exec ID EXEC_ID [-i] [-t] -- CMD...     run CMD in the container, print
                                            its output; -i forwards stdin,
                                            -t gives it a terminal
    wait ID [EXEC_ID]                       print the exit status
    kill ID [EXEC_ID] [--signal N]          no EXEC_ID: every process
    kill --all [--signal N]                 every container not protected
    rm ID [--timeout SECS] [--verbose]      --verbose: print the teardown report
    rm --all [--timeout SECS] [--verbose]   every container not protected
                                            (protected: the pause container and
                                            io.bosun.protected=true; named on stderr)
    logs ID [EXEC_ID]                       stdout and stderr until EOF
    run ID --rootfs DIR -- CMD...           create, start, output, wait, rm
    ps                                      containers, states, pids, exec ids
    images                                  what the image store holds
    stats ID                                cpu, memory, pids, network (JSON)
    call METHOD [JSON]                      any Kata method by name, its request as protobuf
                                            JSON (default {}); prints the answer as JSON, or
                                            as text when it is one text field
                                            (GetMetrics, GetDiagnosticData)

OPTIONS:
    --addr ADDR      unix:///path, unix://@name, vsock://CID:PORT or
                     hvsock:///path/to/uds:PORT (hybrid vsock); env BOSUNCTL_ADDR
    --timeout SECS   bound on connecting and on each call that is not a
                     long poll (default 5)
    --json           print results as JSON
    -h, --help       this text
    -V, --version    bosunctl's version

EXIT CODES: 0 ok, 1 call failed, 2 usage; run, exec, wait: the process's status
";

const COMMANDS: &[&str] = &[
    "check", "version", "sandbox", "create", "start", "exec", "wait", "kill", "rm", "logs", "run", "ps", "stats",
    "call", "images",
];

struct Opts {
    addr: Address,
    timeout: Duration,
    json: bool,
    command: String,
    args: Args,
}

/// What a command produced.
pub enum Out {
    /// Nothing to print.
    Ok,
    /// A line (or JSON) to print.
    Text(String),
    /// A process exit status: printed, and bosunctl's exit code.
    Status(i32),
}

fn parse(argv: Vec<String>) -> Result<Option<Opts>, String> {
    let mut addr = std::env::var("BOSUNCTL_ADDR").ok();
    let mut timeout = Duration::from_secs(5);
    let mut json = false;
    let mut it = argv.into_iter().peekable();
    while let Some(a) = it.peek().cloned() {
        if !a.starts_with('-') {
            break;
        }
        it.next();
        let (name, inline) = match a.split_once('=') {
            Some((n, v)) => (n.to_string(), Some(v.to_string())),
            None => (a.clone(), None),
        };
        let mut value = |n: &str| inline.clone().or_else(|| it.next()).ok_or(format!("{n} needs a value"));
        match name.as_str() {
            "-h" | "--help" => return Ok(None),
            "-V" | "--version" => {
                println!(
                    "bosunctl {} (kata agent protocol {})",
                    env!("CARGO_PKG_VERSION"),
                    bosun::rpc::PROTOCOL_VERSION
                );
                std::process::exit(0);
            }
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
            other => return Err(format!("unexpected argument {other:?}")),
        }
    }
    let command = it.next().ok_or("no command given")?;
    if command == "help" {
        return Ok(None);
    }
    if !COMMANDS.contains(&command.as_str()) {
        return Err(format!("unknown command {command:?}"));
    }
    let addr = addr.ok_or("no agent address: pass --addr or set BOSUNCTL_ADDR")?;
    let addr = Address::parse(&addr)
        .and_then(|a| a.check_dialable().map(|_| a))
        .map_err(|e| e.to_string())?;
    Ok(Some(Opts {
        addr,
        timeout,
        json,
        command,
        args: Args::new(it.collect()),
    }))
}

fn main() -> ExitCode {
    let mut opts = match parse(std::env::args().skip(1).collect()) {
        Ok(Some(o)) => o,
        Ok(None) => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => return usage_error(&e),
    };
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("bosunctl: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match rt.block_on(run(&mut opts)) {
        Ok(Out::Ok) => ExitCode::SUCCESS,
        Ok(Out::Text(t)) => {
            println!("{t}");
            ExitCode::SUCCESS
        }
        Ok(Out::Status(s)) => {
            if opts.json {
                println!("{}", serde_json::json!({ "status": s }));
            } else if opts.command == "wait" {
                println!("{s}");
            }
            ExitCode::from(u8::try_from(s).unwrap_or(255))
        }
        Err(Failure::Usage(e)) => usage_error(&e),
        Err(Failure::Call(e)) => {
            eprintln!("bosunctl: {} failed: {e}", opts.command);
            ExitCode::from(1)
        }
    }
}

fn usage_error(e: &str) -> ExitCode {
    eprintln!("bosunctl: {e}\nRun `bosunctl --help` for usage.");
    ExitCode::from(2)
}

/// Why a command failed: its arguments (exit 2) or the call (exit 1).
pub enum Failure {
    /// Bad arguments.
    Usage(String),
    /// The agent or the transport refused.
    Call(String),
}

impl From<String> for Failure {
    fn from(s: String) -> Self {
        Self::Usage(s)
    }
}

impl From<&str> for Failure {
    fn from(s: &str) -> Self {
        Self::Usage(s.to_string())
    }
}

async fn run(o: &mut Opts) -> Result<Out, Failure> {
    // Argument errors are found before connecting where the command allows.
    let c = Client::connect(&o.addr, o.timeout)
        .await
        .map_err(|e| Failure::Call(e.to_string()))?;
    let a = &mut o.args;
    match o.command.as_str() {
        "check" => {
            let r = c.check().await.map_err(describe)?;
            let status = format!("{:?}", r.status.enum_value_or_default());
            Ok(Out::Text(if o.json {
                serde_json::json!({ "status": status }).to_string()
            } else {
                status
            }))
        }
        "version" => {
            let r = c.version().await.map_err(describe)?;
            Ok(Out::Text(if o.json {
                serde_json::json!({ "agent_version": r.agent_version, "grpc_version": r.grpc_version }).to_string()
            } else {
                format!("agent {} (protocol {})", r.agent_version, r.grpc_version)
            }))
        }
        "sandbox" => pod::sandbox(&c, a).await,
        "create" => pod::create(&c, a).await,
        "start" => pod::start(&c, a).await,
        "exec" => pod::exec(&c, a).await,
        "wait" => pod::wait(&c, a).await,
        "kill" => pod::kill(&c, a).await,
        "rm" => pod::rm(&c, a).await,
        "logs" => pod::logs(&c, a).await,
        "run" => pod::run(&c, a).await,
        "ps" => pod::ps(&c, a, o.json).await,
        "images" => pod::images(&c, a, o.json).await,
        "stats" => pod::stats(&c, a).await,
        "call" => {
            let method = a.positional("method")?;
            let json = a.maybe_positional().unwrap_or_else(|| "{}".into());
            a.done()?;
            let answer = bosun_client::call::call(&c, &method, &json, o.timeout)
                .await
                .map_err(Failure::Call)?;
            Ok(Out::Text(if o.json { answer } else { text_of(&answer) }))
        }
        _ => unreachable!("checked in parse"),
    }
}

/// An answer that is one text field (GetMetrics' Prometheus text,
/// GetDiagnosticData's data) as that text; any other as its JSON.
fn text_of(json: &str) -> String {
    let v: serde_json::Value = match serde_json::from_str(json) {
        Ok(v) => v,
        Err(_) => return json.to_string(),
    };
    match v.as_object().map(|o| o.values().collect::<Vec<_>>()).as_deref() {
        Some([serde_json::Value::String(text)]) => text.trim_end().to_string(),
        _ => json.to_string(),
    }
}

/// A failed call, printed as `CODE: message`.
pub fn describe(e: ttrpc::Error) -> Failure {
    Failure::Call(match e {
        ttrpc::Error::RpcStatus(s) => format!("{:?}: {}", s.code(), s.message()),
        other => other.to_string(),
    })
}
