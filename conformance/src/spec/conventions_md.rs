//! CONVENTIONS.md's statements. The table carries it as of spec 1.0.0 and
//! 1.1.0, whose texts agree but for links and one capability row; for older
//! versions it has none, so a rule resting on a convention is a
//! `convention` there.

use super::Word::{May, Must, Should};
use super::{Actor, Doc, Judge, Statement, since};

/// A CONVENTIONS.md statement, judged as `judge` says.
const fn stmt(
    id: &'static str,
    section: &'static str,
    anchor: &'static str,
    actor: Actor,
    wordings: &'static [super::Wording],
    judge: Judge,
) -> Statement {
    Statement {
        judge,
        ..Statement::new(Doc::Conventions, id, (section, anchor), actor, wordings)
    }
}

const BLACK_BOX: Judge = Judge::BlackBox;

pub static STATEMENTS: &[Statement] = &[
    stmt(
        "conv/plugins.support",
        "Plugins",
        "plugins",
        Actor::Plugin,
        &[since(
            "1.0.0",
            Should,
            "Plugin authors should aim to support these conventions where it makes sense for \
             their plugin.",
        )],
        Judge::NotBlackBox(
            "Where a convention makes sense for a plugin is its author's call; the rules for each \
             convention judge the conventions themselves.",
        ),
    ),
    stmt(
        "conv/plugins.accept",
        "Plugins",
        "plugins",
        Actor::Plugin,
        &[since(
            "1.0.0",
            Should,
            "Plugins should accept arguments according to these conventions if they implement \
             the same basic functionality as other plugins.",
        )],
        BLACK_BOX,
    ),
    stmt(
        "conv/fields.errors",
        "Dynamic Plugin specific fields",
        "dynamic-plugin-specific-fields-capabilities--runtime-configuration",
        Actor::Plugin,
        &[since(
            "1.0.0",
            Should,
            "It should return an error if it can't act on fields that were expected or where the \
             field values were malformed.",
        )],
        BLACK_BOX,
    ),
    stmt(
        "conv/ips.prefix",
        "Well-known Capabilities",
        "well-known-capabilities",
        Actor::Plugin,
        &[since(
            "1.0.0",
            May,
            "The plugin may require the IP address to include a prefix length.",
        )],
        BLACK_BOX,
    ),
    stmt(
        "conv/args.ignore",
        "\"args\" in network config",
        "args-in-network-config",
        Actor::Plugin,
        &[since(
            "1.0.0",
            Should,
            "Runtimes can place additional data in `args` and plugins that don't understand that \
             data should just ignore it.",
        )],
        BLACK_BOX,
    ),
    stmt(
        "conv/cni-args.args-wins",
        "CNI_ARGS",
        "cni_args",
        Actor::Plugin,
        &[since(
            "1.0.0",
            Must,
            "If a runtime passes an equivalent key via `args` (eg the `ips` `args` Area and the \
             `CNI_ARGS` `IP` Field) and the plugin understands `args`, the plugin must ignore the \
             CNI_ARGS Field.",
        )],
        BLACK_BOX,
    ),
    stmt(
        "conv/chained.mode",
        "Chained Plugins",
        "chained-plugins",
        Actor::Plugin,
        &[since(
            "1.0.0",
            Should,
            "If plugins are agnostic about the type of interface created, they SHOULD work in a \
             chained mode and configure existing interfaces.",
        )],
        Judge::NotBlackBox(
            "Whether a plugin is agnostic about the interface type is a property of its design; \
             the suite judges a plugin as the kind it is (interface or chained), not the kinds \
             it could be.",
        ),
    ),
    stmt(
        "conv/chained.bridge-tap",
        "Chained Plugins",
        "chained-plugins",
        Actor::Chained,
        &[since(
            "1.0.0",
            Should,
            "So, it should accept any previous result that includes a host-side interface, \
             including `tap` devices.",
        )],
        Judge::NotBlackBox(
            "It binds the bridge plugin, by way of example; which plugins are bridge-like, and \
             with what tap device to chain them, the suite cannot tell.",
        ),
    ),
];
