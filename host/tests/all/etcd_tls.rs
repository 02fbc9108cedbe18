//! The shared store as production runs etcd: members started with
//! `--cert-file`, `--key-file`, `--trusted-ca-file` and
//! `--client-cert-auth`, a CA and certificates made by the test (rcgen,
//! `etcd_cluster::Pki`), and etcd's own users.
//!
//! What a node's operator needs: every command works over TLS, on one
//! member and on a cluster that loses its leader mid-burst; and every way
//! the trust can be wrong (a CA, a client certificate, a name, a date, a
//! file, a user) ends the call at once with code 7 naming the endpoint or
//! the field and the reason, with nothing written. Code 11 would have a
//! runtime retry a call that can never succeed.

use std::path::Path;

use cni::exec::{Call, Outcome};
use serde_json::{Value, json};
use wasm_ipam::store::EtcdStore;

use crate::common::{Net, assert_error};
use crate::etcd::{assert_consistent, dump_store, etcd_available, pooled_on};
use crate::etcd_cluster::{assert_burst_held, burst, cluster_net, conf, ipam_store};
use etcd_cluster::{Cluster, Issued, Pki, ServerTls, Use};

/// A CA, the members' certificate for `names`, and a client certificate
/// the members accept.
fn pki(names: &[&str]) -> (Pki, ServerTls) {
    let pki = Pki::new("etcd-ca");
    let tls = pki.server_tls(names);
    (pki, tls)
}

/// A TLS cluster of `n` members on 127.0.0.1, whose certificate names that
/// address.
fn tls_cluster(n: usize) -> (Pki, Cluster) {
    let (pki, tls) = pki(&["127.0.0.1"]);
    (pki, Cluster::start_tls(n, tls))
}

/// `store` with its `tls` object changed by `edit`.
fn with_tls(store: &Value, edit: impl FnOnce(&mut Value)) -> Value {
    let mut store = store.clone();
    edit(&mut store["etcd"]["tls"]);
    store
}

/// The leases etcd holds for the `cluster` network, by address.
fn held(cluster: &Cluster) -> Vec<String> {
    let store = EtcdStore::connect(&conf(cluster), None).unwrap();
    assert_consistent(&dump_store(&store, "cluster"))
        .into_values()
        .collect()
}

/// `wasm-ipam <args>` with `--config` a file holding `conf`.
fn tool_on(conf: &Value, args: &[&str]) -> std::process::Output {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("net.conf");
    std::fs::write(&file, conf.to_string()).unwrap();
    std::process::Command::new(crate::common::plugin())
        .args(args)
        .arg("--config")
        .arg(&file)
        .output()
        .unwrap()
}

#[test]
fn every_command_works_over_tls_with_a_client_certificate() {
    if !etcd_available() {
        return;
    }
    let (_pki, cluster) = tls_cluster(1);
    let net = cluster_net(&cluster);
    let a = net.add_ip("a");
    let b = net.add_ip("b");
    assert_ne!(a, b);
    let prev = net.add("c").json();
    let check = Call::attach("CHECK", "c");
    let mut conf = net.conf.clone();
    conf["prevResult"] = prev;
    let out = net.run_conf(&check, &conf);
    assert!(out.ok(), "CHECK over TLS: {} {}", out.stdout, out.stderr);
    let out = net.run(&Call::attach("DEL", "a"));
    assert!(out.ok(), "DEL over TLS: {} {}", out.stdout, out.stderr);
    let mut held_now = held(&cluster);
    held_now.sort();
    assert_eq!(held_now, ["b", "c"]);

    // GC keeps only the valid attachments.
    let mut gc = net.conf.clone();
    gc["cni.dev/valid-attachments"] = json!([{"containerID": "b", "ifname": "eth0"}]);
    gc["cniVersion"] = json!("1.1.0");
    let out = net.run_conf(&Call::new("GC"), &gc);
    assert!(out.ok(), "GC over TLS: {} {}", out.stdout, out.stderr);
    assert_eq!(held(&cluster), ["b"]);
    let out = net.run_conf(&Call::new("STATUS"), &gc);
    assert!(out.ok(), "STATUS over TLS: {} {}", out.stdout, out.stderr);

    // The operator's tools take the same settings from the same config.
    let listed = tool_on(&net.conf, &["leases", "--json"]);
    assert!(
        listed.status.success(),
        "leases --config over TLS: {}",
        String::from_utf8_lossy(&listed.stderr)
    );
    let listed: Value = serde_json::from_slice(&listed.stdout).unwrap();
    assert_eq!(listed["networks"][0]["leases"][0]["containerID"], "b");
}

#[test]
fn the_leader_killed_mid_burst_over_tls_fails_no_pod() {
    if !etcd_available() {
        return;
    }
    let (_pki, mut cluster) = tls_cluster(3);
    let net = cluster_net(&cluster);
    let leader = cluster.leader();
    let members = std::sync::Mutex::new(&mut cluster);
    let outcomes = burst(&net, 10, 10, 20, || members.lock().unwrap().kill(leader));
    let cluster = members.into_inner().unwrap();
    assert!(cluster.members[leader].child.is_none());
    assert_burst_held(cluster, &net, &outcomes);
}

/// Asserts `out` is the refusal of the one member, code 7, with `why`;
/// the message names the endpoint.
#[track_caller]
fn assert_refused(out: &Outcome, cluster: &Cluster, why: &str) {
    assert_error(out, 7, &cluster.endpoints()[0]);
    let msg = out.json()["msg"].as_str().unwrap().to_string();
    assert!(msg.contains(why), "{msg:?} lacks {why:?}");
}

#[test]
fn every_wrong_trust_is_a_clear_code_7_naming_the_endpoint_and_nothing_is_written() {
    if !etcd_available() {
        return;
    }
    // The members' certificate names a host, not the address they are
    // reached on, as a certificate issued for DNS names would.
    let (_pki, mut tls) = pki(&["etcd.test"]);
    tls.server_name = Some("etcd.test".into());
    let cluster = Cluster::start_tls(1, tls);
    let good = ipam_store(&cluster, 3000);
    let other = Pki::new("other-ca");
    let foreign = other.issue("foreign", &["node"], Use::Client, false);
    let client = |c: &Issued| {
        let c = c.clone();
        move |t: &mut Value| {
            t["certFile"] = json!(c.cert);
            t["keyFile"] = json!(c.key);
        }
    };
    let cases: Vec<(&str, Value, &str)> = vec![
        (
            "the name the certificate does not carry",
            with_tls(&good, |t| {
                t.as_object_mut().unwrap().remove("serverName");
            }),
            "not valid for name",
        ),
        (
            "another CA",
            with_tls(&good, |t| t["caFile"] = json!(other.ca_file)),
            "UnknownIssuer",
        ),
        (
            "a client certificate from another CA",
            with_tls(&good, client(&foreign)),
            "it refused our client certificate (TLS alert BadCertificate): tls.certFile must \
             be signed by the CA of the members' --trusted-ca-file",
        ),
        (
            "no client certificate",
            with_tls(&good, |t| {
                let t = t.as_object_mut().unwrap();
                t.remove("certFile");
                t.remove("keyFile");
            }),
            "it requires a client certificate",
        ),
    ];
    for (i, (what, store, why)) in cases.into_iter().enumerate() {
        let net = pooled_on(store, "node-00");
        let out = net.add(&format!("case-{i}"));
        eprintln!("{what}: {}", out.stdout);
        assert_refused(&out, &cluster, why);
        assert!(held(&cluster).is_empty(), "{what} wrote a lease");
    }

    // With the right name, the same member serves.
    let net = pooled_on(good, "node-00");
    net.add_ip("right");
    assert_eq!(held(&cluster), ["right"]);
}

#[test]
fn an_expired_member_certificate_is_refused() {
    if !etcd_available() {
        return;
    }
    let pki = Pki::new("etcd-ca");
    let tls = ServerTls {
        ca_file: pki.ca_file.clone(),
        server: pki.issue("member", &["127.0.0.1"], Use::Server, true),
        client: pki.issue("node", &["node"], Use::Client, false),
        server_name: None,
    };
    // etcd serves an expired certificate; the probes of a cluster would
    // refuse it, so the member is started by hand here.
    let cluster = Cluster::start_tls_unprobed(1, tls);
    let net = pooled_on(ipam_store(&cluster, 3000), "node-00");
    let out = net.add("late");
    eprintln!("{}", out.stdout);
    assert_refused(&out, &cluster, "expired");
}

#[test]
fn a_wrong_file_is_code_7_naming_the_field_before_any_traffic() {
    let pki = Pki::new("etcd-ca");
    let node = pki.issue("node", &["node"], Use::Client, false);
    let other = pki.issue("other", &["node"], Use::Client, false);
    let expired = pki.issue("expired", &["node"], Use::Client, true);
    let server = pki.issue("server", &["127.0.0.1"], Use::Server, false);
    let junk = pki.dir().join("junk.pem");
    std::fs::write(&junk, "not a certificate\n").unwrap();
    // No member listens here: a call that got as far as connecting would
    // be code 11 "try again later", not 7.
    let endpoint = format!("https://127.0.0.1:{}", etcd_cluster::free_port());
    let store =
        |tls: Value| json!({"etcd": {"endpoints": [endpoint], "tls": tls, "timeoutMs": 500}});
    let good = json!({"caFile": pki.ca_file, "certFile": node.cert, "keyFile": node.key});
    let edit = |f: &dyn Fn(&mut Value)| {
        let mut t = good.clone();
        f(&mut t);
        store(t)
    };
    let missing = pki.dir().join("missing.pem");
    let cases: Vec<(Value, String)> = vec![
        (
            edit(&|t| t["caFile"] = json!(missing)),
            format!(
                "ipam.store.etcd.tls.caFile {}: cannot be read",
                missing.display()
            ),
        ),
        (
            edit(&|t| t["caFile"] = json!(junk)),
            "ipam.store.etcd.tls.caFile".into(),
        ),
        (
            edit(&|t| t["keyFile"] = json!(other.key)),
            format!(
                "ipam.store.etcd.tls.keyFile {}: is not the private key of the certificate in {}",
                other.key.display(),
                node.cert.display()
            ),
        ),
        (
            edit(&|t| {
                t["certFile"] = json!(expired.cert);
                t["keyFile"] = json!(expired.key);
            }),
            format!(
                "ipam.store.etcd.tls.certFile {}: expired on",
                expired.cert.display()
            ),
        ),
        (
            edit(&|t| {
                t["certFile"] = json!(server.cert);
                t["keyFile"] = json!(server.key);
            }),
            "is not a client certificate: its extended key usage lacks clientAuth".into(),
        ),
        (
            edit(&|t| t["certFile"] = json!(junk)),
            "ipam.store.etcd.tls.certFile".into(),
        ),
        (
            edit(&|t| {
                t.as_object_mut().unwrap().remove("keyFile");
            }),
            "ipam.store.etcd.tls.certFile needs ipam.store.etcd.tls.keyFile".into(),
        ),
        (
            json!({"etcd": {"endpoints": [endpoint]}}),
            "ipam.store.etcd.tls must say how to trust the members".into(),
        ),
        (
            json!({"etcd": {"endpoints": ["http://127.0.0.1:2379"], "tls": good}}),
            "ipam.store.etcd.tls is set but the endpoints are http:// URLs".into(),
        ),
        (
            json!({"etcd": {"endpoints": ["http://127.0.0.1:2379"], "username": "node"}}),
            "passwordFile".into(),
        ),
        (
            json!({"etcd": {"endpoints": ["http://127.0.0.1:2379"], "username": "node",
                            "passwordFile": missing}}),
            format!(
                "ipam.store.etcd.passwordFile {}: cannot be read",
                missing.display()
            ),
        ),
    ];
    for (store, needle) in cases {
        let net = Net::with_ipam(
            "1.0.0",
            json!({"policy": "pooled", "node": "node-00", "store": store,
                   "pools": [{"name": "main", "cidr": "10.50.0.0/16", "blockSize": 26}]}),
        );
        let out = net.add("a");
        assert_error(&out, 7, &needle);
    }
}

/// Sets up etcd's users on `cluster` (plain HTTP): `root`, and `node`
/// with a role that reads and writes the prefix `/wasm-ipam`, and `stranger` with no
/// role; then turns authentication on.
fn users(cluster: &Cluster) {
    let url = cluster.endpoints()[0].clone();
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(async {
            let mut c = etcd_client::Client::connect([url], None).await.unwrap();
            c.user_add("root", "root-pw", None).await.unwrap();
            c.user_grant_role("root", "root").await.unwrap();
            c.role_add("ipam").await.unwrap();
            // The config's prefix itself: it covers the networks'
            // `/wasm-ipam/<network>/` and the commits' `/wasm-ipam:commits/`.
            let prefix = etcd_client::Permission::read_write("/wasm-ipam").with_prefix();
            c.role_grant_permission("ipam", prefix).await.unwrap();
            c.user_add("node", "node-pw", None).await.unwrap();
            c.user_grant_role("node", "ipam").await.unwrap();
            c.user_add("stranger", "stranger-pw", None).await.unwrap();
            c.auth_enable().await.unwrap();
        });
}

#[test]
fn an_etcd_user_with_a_role_on_the_prefix_works_and_one_without_is_refused() {
    if !etcd_available() {
        return;
    }
    // Tokens that expire a second after their last use, so that one
    // expires within a test.
    let cluster = Cluster::start_with(1, &["--auth-token-ttl", "1"]);
    users(&cluster);
    let secrets = tempfile::tempdir().unwrap();
    let password = |user: &str, text: &str| {
        let file = secrets.path().join(user);
        // As `echo pw > file` writes it.
        std::fs::write(&file, format!("{text}\n")).unwrap();
        file
    };
    let store = |user: &str, file: &Path| {
        let mut s = ipam_store(&cluster, 3000);
        s["etcd"]["username"] = json!(user);
        s["etcd"]["passwordFile"] = json!(file);
        s
    };
    let node = pooled_on(store("node", &password("node", "node-pw")), "node-00");
    let first = node.add_ip("a");
    let out = node.run(&Call::attach("DEL", "a"));
    assert!(out.ok(), "DEL as node: {}", out.stdout);
    assert_eq!(node.add_ip("b"), first);

    let stranger = pooled_on(
        store("stranger", &password("stranger", "stranger-pw")),
        "node-00",
    );
    let out = stranger.add("s");
    eprintln!("{}", out.stdout);
    assert_refused(&out, &cluster, "no role");

    let wrong = pooled_on(store("node", &password("wrong", "guess")), "node-00");
    let out = wrong.add("w");
    eprintln!("{}", out.stdout);
    assert_refused(&out, &cluster, "refused");

    // Only b is held, as root sees it; root's token expires between two
    // transactions of one handle and is renewed.
    let mut root = conf(&cluster);
    root.auth = Some(wasm_ipam::cni::config::EtcdAuth {
        username: "root".into(),
        password_file: password("root", "root-pw"),
    });
    let store = EtcdStore::connect(&root, None).unwrap();
    let leases: Vec<String> = assert_consistent(&dump_store(&store, "cluster"))
        .into_values()
        .collect();
    assert_eq!(leases, ["b"]);
    std::thread::sleep(std::time::Duration::from_millis(2500));
    let again: Vec<String> = assert_consistent(&dump_store(&store, "cluster"))
        .into_values()
        .collect();
    assert_eq!(again, ["b"], "a handle outlives its first token");
}

/// Puts `issued`'s certificate and key at `cert` and `key` by renames, as a
/// rotation (cert-manager, a Secret's update) replaces them.
fn rotate(issued: &Issued, cert: &Path, key: &Path) {
    for (from, to) in [(&issued.cert, cert), (&issued.key, key)] {
        let next = to.with_extension("next");
        std::fs::copy(from, &next).unwrap();
        std::fs::rename(&next, to).unwrap();
    }
}

#[test]
fn a_server_takes_a_rotated_client_certificate_at_its_next_call() {
    if !etcd_available() {
        return;
    }
    let (pki, cluster) = tls_cluster(1);
    let secrets = tempfile::tempdir().unwrap();
    let (cert, key) = (
        secrets.path().join("tls.crt"),
        secrets.path().join("tls.key"),
    );
    rotate(&cluster.tls.as_ref().unwrap().client, &cert, &key);
    let store = with_tls(&ipam_store(&cluster, 3000), |t| {
        t["certFile"] = json!(cert);
        t["keyFile"] = json!(key);
    });
    let net = pooled_on(store, "node-00");
    let server = crate::serve::Server::start();
    let add = |id: &str| {
        let out = net.run(&crate::serve::via(Call::attach("ADD", id), server.path()));
        assert!(crate::serve::served(&out), "{}", out.stderr);
        out
    };
    let added = |id: &str| {
        let out = add(id);
        assert!(out.ok(), "{} {}", out.stdout, out.stderr);
    };

    added("first");
    // A renewed certificate, with a new key.
    rotate(
        &pki.issue("renewed", &["node"], Use::Client, false),
        &cert,
        &key,
    );
    added("renewed");
    // A lapsed one: the server reads it at the next call, and says so.
    rotate(
        &pki.issue("lapsed", &["node"], Use::Client, true),
        &cert,
        &key,
    );
    assert_error(&add("lapsed"), 7, "expired on");
    rotate(
        &pki.issue("again", &["node"], Use::Client, false),
        &cert,
        &key,
    );
    added("again");
    let mut leases = held(&cluster);
    leases.sort();
    assert_eq!(leases, ["again", "first", "renewed"]);
}
