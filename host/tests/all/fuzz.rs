//! Property-based fuzzing of everything the host parses or converts: the
//! network config, the environment and results in every version's layout.
//! No input may panic the host; every failure is a CNI error with a code
//! that fits. The seed corpus lives in testdata/fuzz/configs; failures
//! proptest finds are kept in testdata/fuzz/regressions.txt and replayed
//! first on every run. `PROPTEST_CASES` runs it longer (docs/reliability.md
//! has the figures and the command).

use std::collections::HashMap;
use std::ffi::OsString;
use std::net::IpAddr;
use std::path::Path;

use ipnet::IpNet;
use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;
use serde_json::{Value, json};
use wasm_ipam::cni::config::NetConf;
use wasm_ipam::cni::env::Env;
use wasm_ipam::cni::result::{Dns, IpConfig, IpamResult, Route};
use wasm_ipam::cni::version::{CniVersion, VERSIONS};

fn config() -> ProptestConfig {
    ProptestConfig {
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../testdata/fuzz/regressions.txt"
        )))),
        ..ProptestConfig::default()
    }
}

/// Arbitrary JSON, biased towards the keys and shapes a network config has.
fn json_value() -> impl Strategy<Value = Value> {
    let keys = prop::sample::select(vec![
        "cniVersion",
        "name",
        "ipam",
        "policy",
        "dataDir",
        "cacheDir",
        "node",
        "resolvConf",
        "limits",
        "memoryMiB",
        "timeoutMs",
        "fuel",
        "args",
        "runtimeConfig",
        "prevResult",
        "ips",
        "ranges",
        "cni.dev/valid-attachments",
        "cni.dev/attachments",
        "containerID",
        "ifname",
        "address",
        "ip4",
    ]);
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(|f| json!(f)),
        prop::sample::select(vec![
            "1.0.0",
            "0.2.0",
            "1.1.0",
            "9.9",
            "",
            "host-local",
            "10.0.0.1/24",
            "fd00::1"
        ])
        .prop_map(Value::from),
        ".{0,12}".prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 48, 6, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::vec((keys.clone(), inner), 0..6).prop_map(|kv| Value::Object(
                kv.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
            )),
        ]
    })
}

fn ip() -> impl Strategy<Value = IpAddr> {
    prop_oneof![
        any::<u32>().prop_map(|n| IpAddr::from(std::net::Ipv4Addr::from(n))),
        any::<u128>().prop_map(|n| IpAddr::from(std::net::Ipv6Addr::from(n)))
    ]
}

fn ip_config() -> impl Strategy<Value = IpConfig> {
    (ip(), any::<u8>(), any::<bool>()).prop_map(|(addr, len, gw)| {
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let address = IpNet::new(addr, len % (max + 1)).unwrap();
        IpConfig {
            address,
            gateway: gw.then_some(addr),
        }
    })
}

fn route() -> impl Strategy<Value = Route> {
    (
        ip(),
        any::<u8>(),
        prop::option::of(ip()),
        prop::option::of(any::<u32>()),
    )
        .prop_map(|(addr, len, gw, mtu)| {
            let max = if addr.is_ipv4() { 32 } else { 128 };
            Route {
                dst: IpNet::new(addr, len % (max + 1)).unwrap(),
                gw,
                mtu,
                ..Route::default()
            }
        })
}

fn result() -> impl Strategy<Value = IpamResult> {
    (
        prop::collection::vec(ip_config(), 0..4),
        prop::collection::vec(route(), 0..4),
        prop::collection::vec(".{0,8}", 0..3),
    )
        .prop_map(|(ips, routes, nameservers)| IpamResult {
            ips,
            routes,
            dns: Dns {
                nameservers,
                ..Dns::default()
            },
        })
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn any_bytes_on_stdin_parse_or_fail_with_a_config_code(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        if let Err(e) = NetConf::parse(&bytes) {
            prop_assert!([1, 6, 7].contains(&e.code()), "{e:?}");
        }
    }

    #[test]
    fn any_json_config_parses_or_fails_with_a_config_code(v in json_value()) {
        if let Err(e) = NetConf::parse(v.to_string().as_bytes()) {
            prop_assert!([1, 6, 7].contains(&e.code()), "{e:?}");
        }
    }

    #[test]
    fn any_environment_parses_or_fails_with_code_4(
        command in prop::sample::select(vec!["ADD", "DEL", "CHECK", "GC", "STATUS", "VERSION", "", "add"]),
        values in prop::collection::vec(".{0,20}", 4),
    ) {
        let map: HashMap<&str, OsString> = [
            ("CNI_COMMAND", command.into()),
            ("CNI_CONTAINERID", values[0].clone().into()),
            ("CNI_IFNAME", values[1].clone().into()),
            ("CNI_NETNS", values[2].clone().into()),
            ("CNI_ARGS", values[3].clone().into()),
        ].into_iter().collect();
        if let Err(e) = Env::from_lookup(&|k| map.get(k).cloned()) {
            prop_assert_eq!(e.code(), 4, "{:?}", e);
        }
    }

    #[test]
    fn results_convert_to_every_version_and_read_back(r in result()) {
        for version in VERSIONS {
            let v = CniVersion::parse(version).unwrap();
            match r.to_json(&v) {
                Ok(text) => {
                    let json: Value = serde_json::from_str(&text).unwrap();
                    prop_assert_eq!(&json["cniVersion"], version);
                    let back = IpamResult::from_prev_result(&json).unwrap();
                    if v.result_format() != wasm_ipam::cni::version::ResultFormat::V02 {
                        prop_assert_eq!(&back.ips, &r.ips);
                    }
                }
                Err(e) => prop_assert_eq!(e.code(), 1, "only 0.1/0.2 refuse, for two addresses of a family: {:?}", e),
            }
        }
    }
}

#[test]
fn the_seed_corpus_parses_or_fails_cleanly() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata/fuzz/configs");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let bytes = std::fs::read(&path).unwrap();
        match NetConf::parse(&bytes) {
            Ok(_) => {}
            Err(e) => assert!([1, 6, 7].contains(&e.code()), "{}: {e:?}", path.display()),
        }
        seen += 1;
    }
    assert!(seen >= 7);
}
