//! The rules, run natively against an in-memory host: `cargo test -p
//! policy-template`. Then run the built component through the whole host
//! with `cni-conformance` (see docs/writing-a-policy.md).

use ipam_kit::MemHost;
use ipam_kit::errors::code;
use ipam_kit::testing::{att, context};
use serde_json::json;

use super::*;

fn ctx() -> Context {
    context(json!({"subnet": "10.1.0.0/29"}))
}

fn add(host: &mut MemHost, id: &str) -> Result<String, IpamError> {
    Template::add(host, &ctx(), &att(id)).map(|a| a.ips[0].address.clone())
}

#[test]
fn hands_out_the_lowest_free_address_and_reuses_it_at_once() {
    let mut host = MemHost::default();
    assert_eq!(
        add(&mut host, "a").unwrap(),
        "10.1.0.2/29",
        "skips the gateway"
    );
    assert_eq!(add(&mut host, "b").unwrap(), "10.1.0.3/29");
    Template::del(&mut host, &ctx(), &att("a")).unwrap();
    assert_eq!(add(&mut host, "c").unwrap(), "10.1.0.2/29");
}

#[test]
fn a_full_subnet_is_exhausted_and_a_second_add_is_refused() {
    let mut host = MemHost::default();
    for id in ["a", "b", "c", "d", "e"] {
        add(&mut host, id).unwrap();
    }
    let full = add(&mut host, "f").unwrap_err();
    assert_eq!(code(&full), 11);
    assert!(matches!(
        Template::status(&mut host, &ctx()).unwrap(),
        Availability::Unavailable(_)
    ));
    assert_eq!(code(&add(&mut host, "a").unwrap_err()), ALREADY_ALLOCATED);
}

#[test]
fn gc_releases_what_is_not_valid() {
    let mut host = MemHost::default();
    add(&mut host, "a").unwrap();
    add(&mut host, "b").unwrap();
    let released = Template::gc(&mut host, &ctx(), &[att("b")]).unwrap();
    assert_eq!(released.len(), 1);
    assert_eq!(released[0].attachment.container_id, "a");
    Template::check(&mut host, &ctx(), &att("b"), None).unwrap();
    assert!(Template::check(&mut host, &ctx(), &att("a"), None).is_err());
}

#[test]
fn bad_configs_name_the_problem() {
    for (config, needle) in [
        (json!({}), "missing field `subnet`"),
        (json!({"subnet": "10.1.0.1/24"}), "host bits"),
        (json!({"subnet": "10.1.0.0/32"}), "too small"),
    ] {
        let err = Template::add(&mut MemHost::default(), &context(config), &att("a")).unwrap_err();
        assert_eq!(code(&err), 7);
        assert!(errors::message(&err).contains(needle), "{err:?}");
    }
}

#[test]
fn a_requested_address_is_given_or_refused_never_swapped() {
    let mut host = MemHost::default();
    let mut want = ctx();
    want.cni_args = vec![("IP".into(), "10.1.0.5".into())];
    let got = Template::add(&mut host, &want, &att("a")).unwrap();
    assert_eq!(got.ips[0].address, "10.1.0.5/29");
    let taken = Template::add(&mut host, &want, &att("b")).unwrap_err();
    assert_eq!(code(&taken), ADDRESS_UNAVAILABLE);
    want.cni_args = vec![("IP".into(), "10.9.9.9".into())];
    assert_eq!(
        code(&Template::add(&mut host, &want, &att("b")).unwrap_err()),
        ADDRESS_UNAVAILABLE
    );
    let mut unknown = ctx();
    unknown.cni_args = vec![("COLOUR".into(), "blue".into())];
    assert_eq!(
        code(&Template::add(&mut host, &unknown, &att("b")).unwrap_err()),
        2
    );
}
