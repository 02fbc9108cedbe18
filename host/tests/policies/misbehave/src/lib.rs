//! A policy that does, on ADD, whatever `ipam.misbehave` says. The host's
//! tests use it to show that no policy can hang, crash or corrupt the host.
//! Every other operation behaves.

use ipam_kit::{
    Allocation, Attachment, Availability, Context, Host, IpConfig, IpamError, Level, Policy,
    Released, errors,
};

pub struct Misbehave;

ipam_kit::export_policy!(Misbehave);

fn recurse(n: u64) -> u64 {
    if n == u64::MAX {
        return 0;
    }
    // black_box keeps the recursion real.
    std::hint::black_box(recurse(std::hint::black_box(n + 1))) + 1
}

impl Policy for Misbehave {
    fn add(host: &mut dyn Host, ctx: &Context, _att: &Attachment) -> Result<Allocation, IpamError> {
        let cfg: serde_json::Value =
            serde_json::from_str(&ctx.config).map_err(|e| errors::invalid_config(e.to_string()))?;
        // Every case writes first, so the tests can see it rolled back.
        host.put("written-before-failing", b"x");
        let ok = |address: &str| Allocation {
            ips: vec![IpConfig {
                address: address.into(),
                gateway: None,
            }],
            routes: vec![],
            dns: None,
        };
        match cfg["misbehave"].as_str().unwrap_or("") {
            "loop" => loop {
                std::hint::black_box(host.now());
            },
            "oom" => {
                let mut hog: Vec<Vec<u8>> = Vec::new();
                loop {
                    hog.push(vec![1; 1 << 20]);
                    std::hint::black_box(&hog);
                }
            }
            "stack" => Ok(ok(&recurse(0).to_string())),
            "log-flood" => {
                for i in 0..300 {
                    host.log(Level::Debug, &format!("debug line {i}"));
                    host.log(Level::Info, &format!("info line {i} {}", "x".repeat(5000)));
                }
                Ok(ok("10.0.0.2/24"))
            }
            "trap" => panic!("this policy panics on purpose"),
            "store-spam" => {
                for _ in 0..2_000_000u32 {
                    std::hint::black_box(host.get("k"));
                }
                Ok(ok("10.0.0.2/24"))
            }
            "huge-value" => {
                host.put("big", &vec![0u8; 1 << 20]);
                Ok(ok("10.0.0.2/24"))
            }
            "huge-key" => {
                host.put(&"k".repeat(1 << 20), b"v");
                Ok(ok("10.0.0.2/24"))
            }
            "forge-host-key" => {
                host.put(".wasm-ipam/network", b"forged");
                Ok(ok("10.0.0.2/24"))
            }
            // The address counts the keys a scan of everything shows.
            "scan-everything" => {
                let seen = host.scan_all("").len();
                Ok(ok(&format!("10.0.0.{}/24", seen + 2)))
            }
            // The same, one key per page: a page must not come back empty
            // because the host's key was left out of it.
            "scan-by-one" => {
                let mut seen = 0;
                let mut after: Option<String> = None;
                loop {
                    let page = host.scan("", after.as_deref(), 1);
                    let Some((k, _)) = page.into_iter().next() else {
                        break;
                    };
                    seen += 1;
                    after = Some(k);
                }
                Ok(ok(&format!("10.0.0.{}/24", seen + 2)))
            }
            "huge-string" => Ok(ok(&"1".repeat(100 << 20))),
            "bad-address" => Ok(ok("10.0.0.300/24")),
            "loopback-address" => Ok(ok("127.0.0.5/8")),
            "duplicate-address" => Ok(Allocation {
                ips: vec![
                    IpConfig {
                        address: "10.0.0.2/24".into(),
                        gateway: None,
                    },
                    IpConfig {
                        address: "10.0.0.2/24".into(),
                        gateway: None,
                    },
                ],
                routes: vec![],
                dns: None,
            }),
            "reserved-code" => Err(errors::policy(7, "pretends to be a config error")),
            "probe" => {
                // Everything a sandboxed policy must not reach.
                let mut reached = Vec::new();
                if std::fs::read("/etc/passwd").is_ok() || std::fs::read_dir("/").is_ok() {
                    reached.push("the filesystem");
                }
                if std::env::vars().next().is_some() || std::env::args().len() > 1 {
                    reached.push("the environment");
                }
                if std::net::TcpStream::connect("127.0.0.1:1").is_ok()
                    || std::net::UdpSocket::bind("127.0.0.1:0").is_ok()
                {
                    reached.push("a socket");
                }
                let wall = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_secs())
                    .unwrap_or(0);
                if wall != host.now() {
                    reached.push("a clock other than the host's");
                }
                if reached.is_empty() {
                    Ok(ok("10.0.0.2/24"))
                } else {
                    Err(errors::policy(
                        200,
                        format!("the sandbox let the policy reach {}", reached.join(", ")),
                    ))
                }
            }
            "print" => {
                println!("hello from the policy's stdout");
                Ok(ok("10.0.0.2/24"))
            }
            _ => Ok(ok("10.0.0.2/24")),
        }
    }

    fn del(_: &mut dyn Host, _: &Context, _: &Attachment) -> Result<(), IpamError> {
        Ok(())
    }

    fn check(
        _: &mut dyn Host,
        _: &Context,
        _: &Attachment,
        _: Option<&Allocation>,
    ) -> Result<(), IpamError> {
        Ok(())
    }

    fn gc(_: &mut dyn Host, _: &Context, _: &[Attachment]) -> Result<Vec<Released>, IpamError> {
        Ok(vec![])
    }

    fn status(_: &mut dyn Host, _: &Context) -> Result<Availability, IpamError> {
        Ok(Availability::Available)
    }
}
