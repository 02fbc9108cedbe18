//! The routes a DHCP lease gives, as the reference dhcp plugin derives
//! them: the classless static routes (option 121, RFC 3442) when the server
//! sent any, and then nothing else, since RFC 3442 says a client that
//! receives them ignores the static routes and the router option; else the
//! static routes (option 33, classful destinations) and a default route
//! through the first router, which CNI results spell out.

use std::net::Ipv4Addr;

use ipam_kit::Route;
use ipam_kit::dhcp::DhcpLease;

const CLASSLESS_ROUTES: u8 = 121;
const STATIC_ROUTES: u8 = 33;

fn route(dst: String, gw: Option<Ipv4Addr>) -> Route {
    Route {
        dst,
        gw: gw.map(|g| g.to_string()),
        ..Route::default()
    }
}

fn ipv4(b: &[u8]) -> Ipv4Addr {
    Ipv4Addr::new(b[0], b[1], b[2], b[3])
}

/// Option 121: each route is a prefix length, the significant octets of the
/// destination, and a router (0.0.0.0: on the link, no gateway). A
/// malformed tail is dropped, as a client does.
fn classless(mut opt: &[u8]) -> Vec<Route> {
    let mut out = Vec::new();
    while let Some((&len, rest)) = opt.split_first() {
        if len > 32 {
            break;
        }
        let octets = usize::from(len).div_ceil(8);
        if rest.len() < octets + 4 {
            break;
        }
        let mut dst = [0u8; 4];
        dst[..octets].copy_from_slice(&rest[..octets]);
        let gw = ipv4(&rest[octets..octets + 4]);
        out.push(route(
            format!("{}/{len}", Ipv4Addr::from(dst)),
            (!gw.is_unspecified()).then_some(gw),
        ));
        opt = &rest[octets + 4..];
    }
    out
}

/// The classful prefix length of `ip` (RFC 791's classes A, B and C).
fn classful(ip: Ipv4Addr) -> u8 {
    match ip.octets()[0] {
        0..=127 => 8,
        128..=191 => 16,
        _ => 24,
    }
}

/// Option 33: pairs of a classful destination and its router.
fn static_routes(opt: &[u8]) -> Vec<Route> {
    opt.chunks_exact(8)
        .map(|pair| {
            let dst = ipv4(&pair[..4]);
            route(format!("{dst}/{}", classful(dst)), Some(ipv4(&pair[4..])))
        })
        .collect()
}

/// The lease's routes, in the reference's order.
pub fn of(lease: &DhcpLease) -> Vec<Route> {
    if let Some(opt) = lease.option(CLASSLESS_ROUTES) {
        let routes = classless(opt);
        if !routes.is_empty() {
            return routes;
        }
    }
    let mut routes = lease
        .option(STATIC_ROUTES)
        .map(static_routes)
        .unwrap_or_default();
    if let Some(gw) = lease.routers.first().and_then(|r| r.parse().ok()) {
        routes.push(route("0.0.0.0/0".into(), Some(gw)));
    }
    routes
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dsts(routes: &[Route]) -> Vec<(String, Option<String>)> {
        routes
            .iter()
            .map(|r| (r.dst.clone(), r.gw.clone()))
            .collect()
    }

    fn lease(options: Vec<(u8, Vec<u8>)>) -> DhcpLease {
        DhcpLease {
            routers: vec!["10.9.0.1".into()],
            options,
            ..DhcpLease::default()
        }
    }

    fn pair(d: &str, g: &str) -> (String, Option<String>) {
        (d.to_string(), Some(g.to_string()))
    }

    #[test]
    fn classless_routes_replace_the_router_and_static_routes() {
        // 10.20.0.0/16 via 10.9.0.254; 192.168.1.0/24 on the link; the
        // default route via 10.9.0.1.
        let opt121 = vec![
            16, 10, 20, 10, 9, 0, 254, 24, 192, 168, 1, 0, 0, 0, 0, 0, 10, 9, 0, 1,
        ];
        let routes = of(&lease(vec![
            (121, opt121),
            (33, vec![10, 0, 0, 0, 10, 9, 0, 2]),
        ]));
        assert_eq!(
            dsts(&routes),
            [
                pair("10.20.0.0/16", "10.9.0.254"),
                ("192.168.1.0/24".to_string(), None),
                pair("0.0.0.0/0", "10.9.0.1"),
            ]
        );
    }

    #[test]
    fn static_routes_are_classful_and_the_router_is_the_default_route() {
        let opt33 = vec![10, 0, 0, 0, 10, 9, 0, 2, 172, 16, 0, 0, 10, 9, 0, 3, 1, 2];
        let routes = of(&lease(vec![(33, opt33)]));
        assert_eq!(
            dsts(&routes),
            [
                pair("10.0.0.0/8", "10.9.0.2"),
                pair("172.16.0.0/16", "10.9.0.3"),
                pair("0.0.0.0/0", "10.9.0.1"),
            ]
        );
        let mut no_router = lease(vec![]);
        no_router.routers.clear();
        assert!(of(&no_router).is_empty());
    }

    #[test]
    fn a_malformed_classless_option_keeps_what_parsed() {
        let routes = of(&lease(vec![(121, vec![24, 10, 1, 2, 10, 9, 0, 7, 40, 1])]));
        assert_eq!(dsts(&routes), [pair("10.1.2.0/24", "10.9.0.7")]);
        // Nothing parsed: as if there were none.
        let routes = of(&lease(vec![(121, vec![33, 1, 2])]));
        assert_eq!(dsts(&routes), [pair("0.0.0.0/0", "10.9.0.1")]);
    }
}
