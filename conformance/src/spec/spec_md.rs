//! SPEC.md's statements, in the order of the 1.1.0 text. See the module
//! above for where each wording was read.

use super::Word::{May, Must, Should};
use super::{Actor, Doc, Statement, since};

const CONFIG: (&str, &str) = (
    "1 Plugin configuration objects",
    "plugin-configuration-objects",
);
const PARAMS: (&str, &str) = ("2 Parameters", "parameters");
const ERRORS: (&str, &str) = ("2 Errors", "errors");
const ADD: (&str, &str) = (
    "2 ADD",
    "add-add-container-to-network-or-apply-modifications",
);
const DEL: (&str, &str) = (
    "2 DEL",
    "del-remove-container-from-network-or-un-apply-modifications",
);
const CHECK: (&str, &str) = (
    "2 CHECK",
    "check-check-containers-networking-is-as-expected",
);
const STATUS: (&str, &str) = ("2 STATUS", "status-check-plugin-status");
const VERSION: (&str, &str) = ("2 VERSION", "version-probe-plugin-version-support");
const GC: (&str, &str) = ("2 GC", "gc-clean-up-any-stale-resources");
const LIFECYCLE: (&str, &str) = ("3 Lifecycle & Ordering", "lifecycle--ordering");
const DELEGATION: (&str, &str) = ("4 Plugin Delegation", "section-4-plugin-delegation");
const PROTOCOL: (&str, &str) = ("4 Delegated Plugin protocol", "delegated-plugin-protocol");
const PROCEDURE: (&str, &str) = (
    "4 Delegated plugin execution procedure",
    "delegated-plugin-execution-procedure",
);
const RESULTS: (&str, &str) = ("5 Result Types", "section-5-result-types");
const ADD_SUCCESS: (&str, &str) = ("5 ADD Success", "add-success");
const IPAM_RESULT: (&str, &str) = ("5 Delegated plugins (IPAM)", "delegated-plugins-ipam");
const VERSION_RESULT: (&str, &str) = ("5 VERSION Success", "version-success");
const ERROR_RESULT: (&str, &str) = ("5 Error", "error");

macro_rules! s {
    ($id:literal, $section:expr, $actor:ident, [$($w:expr),+ $(,)?]) => {
        Statement::new(Doc::Spec, $id, $section, Actor::$actor, &[$($w),+])
    };
}

pub static STATEMENTS: &[Statement] = &[
    // Section 1: network configuration.
    s!("spec/config.key-semantics", CONFIG, Plugin, [since(
        "1.0.0",
        Should,
        "Plugins that consume any of these configuration keys should respect their intended \
         semantics."
    )]),
    s!("spec/config.unknown-fields", CONFIG, Plugin, [since(
        "0.2.0",
        May,
        "Plugins may define additional fields that they accept and may generate an error if \
         called with unknown fields."
    )])
    .note(
        "The suite puts `dataDir` into every `ipam` object so each case gets fresh state; a \
         plugin may refuse it as an unknown field. cni-conformance detects that for IPAM plugins \
         and leaves the field out (--no-data-dir does so for any plugin).",
    ),
    s!("spec/config.args-ignored", CONFIG, Plugin, [
        since(
            "0.2.0",
            May,
            "The exception to this is the `args` field may be used to pass arbitrary data which \
             may be ignored by plugins."
        )
        .until("0.4.0"),
        since(
            "0.4.0",
            Should,
            "The exception to this is the `args` field may be used to pass arbitrary data which \
             should be ignored by plugins if not understood."
        )
        .until("1.0.0"),
    ]),
    // Section 2: the execution protocol.
    s!("spec/params.ifname", PARAMS, Interface, [
        since(
            "0.3.0",
            Must,
            "`CNI_IFNAME`: Interface name to set up; plugin must honor this interface name or \
             return an error"
        )
        .until("0.4.0"),
        since(
            "0.4.0",
            Must,
            "`CNI_IFNAME`: Interface name to set up; if the plugin is unable to use this \
             interface name it must return an error"
        )
        .until("1.0.0"),
        since(
            "1.0.0",
            Must,
            "`CNI_IFNAME`: Name of the interface to create inside the container; if the plugin \
             is unable to use this interface name it must return an error."
        ),
    ]),
    s!("spec/result.ifname-used", ADD_SUCCESS, Interface, [since(
        "0.3.0",
        Must,
        "If the `CNI_IFNAME` variable exists the plugin must use that name for the \
         sandbox/hypervisor interface or return an error if it cannot."
    )
    .until("1.0.0")]),
    s!("spec/errors.exit-code", ERRORS, Plugin, [
        since(
            "0.4.0",
            Must,
            "Errors must be indicated by a non-zero return code and the following JSON being \
             printed to stdout"
        )
        .until("1.0.0"),
        since(
            "1.0.0",
            Must,
            "A plugin must exit with a return code of 0 on success, and non-zero on failure."
        ),
    ]),
    s!("spec/errors.structure", ERRORS, Plugin, [
        since(
            "0.4.0",
            Must,
            "Errors must be indicated by a non-zero return code and the following JSON being \
             printed to stdout"
        )
        .until("1.0.0"),
        since(
            "1.0.0",
            Should,
            "If the plugin encounters an error, it should output an \"error\" result structure \
             (see below)."
        ),
    ])
    .note(
        "SPEC 1.x contradicts itself: section 2's overview says the plugin returns \"an error on \
         stderr if the operation fails\", while section 5 says results are \"serialized as JSON \
         on standard out\", STATUS says \"output an error on standard out\", \"stderr can be used \
         for unstructured output such as logs\", and every earlier version printed the error to \
         stdout. libcni reads it from stdout. The suite reads the error object on stdout.",
    ),
    s!("spec/add.create-or-adjust", ADD, Plugin, [since(
        "1.0.0",
        Should,
        "A CNI plugin, upon receiving an `ADD` command, should either create the interface \
         defined by `CNI_IFNAME` inside the container at `CNI_NETNS`, or adjust the \
         configuration of the interface defined by `CNI_IFNAME` inside the container at \
         `CNI_NETNS`."
    )]),
    s!("spec/add.result", ADD, Plugin, [
        since(
            "0.4.0",
            Must,
            "Plugins must indicate success with a return code of zero and the following JSON \
             printed to stdout in the case of the ADD command."
        )
        .until("1.0.0"),
        since(
            "1.0.0",
            Must,
            "If the CNI plugin is successful, it must output a result structure (see below) on \
             standard out."
        ),
    ]),
    s!("spec/add.prev-result", ADD, Chained, [
        since(
            "0.3.0",
            Must,
            "However, plugins that support a version of the CNI specification that includes the \
             `prevResult` field MUST handle `prevResult` by either passing it through, modifying \
             it, or suppressing it explicitly."
        )
        .until("1.0.0"),
        since(
            "1.0.0",
            Must,
            "If the plugin was supplied a `prevResult` as part of its input configuration, it \
             MUST handle `prevResult` by either passing it through, or modifying it \
             appropriately."
        ),
    ]),
    s!("spec/add.prev-echo", ADD, Chained, [
        since(
            "0.3.0",
            Should,
            "For the ADD action, plugins SHOULD echo the contents of the `prevResult` field to \
             their stdout to allow subsequent plugins (and the runtime) to receive the result, \
             unless they wish to modify or suppress a previous result."
        )
        .until("0.4.0"),
        since(
            "0.4.0",
            Should,
            "For the `ADD` action, plugins SHOULD echo the contents of the `prevResult` field to \
             their stdout to allow subsequent plugins (and the runtime) to receive the result, \
             unless they wish to modify or suppress a previous result."
        )
        .until("1.0.0"),
    ]),
    s!("spec/add.existing-interface", ADD, Interface, [since(
        "1.0.0",
        Must,
        "If an interface of the requested name already exists in the container, the CNI plugin \
         MUST return with an error."
    )]),
    s!("spec/runtime.no-second-add", ADD, Runtime, [
        since(
            "0.4.0",
            Must,
            "A runtime must not call ADD twice (without a corresponding DEL) for the same \
             `(network name, container id, name of the interface inside the container)`."
        )
        .until("1.0.0"),
        since(
            "1.0.0",
            Should,
            "A runtime should not call `ADD` twice (without an intervening DEL) for the same \
             `(CNI_CONTAINERID, CNI_IFNAME)` tuple."
        ),
    ]),
    s!("spec/del.undo", DEL, Plugin, [
        since(
            "0.4.0",
            Should,
            "A delete operation should release all resources held by the supplied containerid in \
             the configured network."
        )
        .until("1.0.0"),
        since(
            "1.0.0",
            Should,
            "A CNI plugin, upon receiving a `DEL` command, should either delete the interface \
             defined by `CNI_IFNAME` inside the container at `CNI_NETNS`, or undo any \
             modifications applied in the plugin's `ADD` functionality"
        ),
    ]),
    s!("spec/del.tolerate-missing", DEL, Plugin, [
        since(
            "0.3.0",
            Should,
            "Plugins should generally complete a DEL action without error even if some resources \
             are missing."
        )
        .until("0.4.0"),
        since(
            "0.4.0",
            Should,
            "Plugins should generally complete a `DEL` action without error even if some \
             resources are missing."
        ),
    ]),
    s!("spec/del.ipam-release", DEL, Ipam, [since(
        "0.3.0",
        Should,
        "For example, an IPAM plugin should generally release an IP allocation and return \
         success even if the container network namespace no longer exists, unless that network \
         namespace is critical for IPAM management."
    )]),
    s!("spec/del.dhcp-release", DEL, Ipam, [
        since(
            "0.3.0",
            Should,
            "While DHCP may usually send a 'release' message on the container network interface, \
             since DHCP leases have a lifetime this release action would not be considered \
             critical and no error should be returned."
        )
        .until("1.0.0"),
        since(
            "1.0.0",
            Should,
            "While DHCP may usually send a 'release' message on the container network interface, \
             since DHCP leases have a lifetime this release action would not be considered \
             critical and no error should be returned if this action fails."
        ),
    ])
    .not_black_box(
        "It binds a DHCP plugin whose release fails; the suite can neither tell a DHCP plugin \
         from another nor make its server fail on cue.",
    ),
    s!("spec/del.bridge-delegates", DEL, Delegating, [
        since(
            "0.3.0",
            Should,
            "For another example, the `bridge` plugin should delegate the DEL action to the IPAM \
             plugin and clean up its own resources (if present) even if the container network \
             namespace and/or container network interface no longer exist."
        )
        .until("1.0.0"),
        since(
            "1.0.0",
            Should,
            "For another example, the `bridge` plugin should delegate the DEL action to the IPAM \
             plugin and clean up its own resources even if the container network namespace \
             and/or container network interface no longer exist."
        ),
    ]),
    s!("spec/del.multiple", DEL, Plugin, [
        since(
            "0.4.0",
            Should,
            "DEL may be followed by additional DELs but plugins should handle multiple DELs \
             permissively (i.e. plugin DEL should be idempotent)."
        )
        .until("1.0.0"),
        since(
            "1.0.0",
            Must,
            "Plugins MUST accept multiple `DEL` calls for the same (`CNI_CONTAINERID`, \
             `CNI_IFNAME`) pair, and return success if the interface in question, or any \
             modifications added, are missing."
        ),
    ]),
    s!("spec/del.bare", DEL, Plugin, [since(
        "0.4.0",
        Should,
        "When `CNI_NETNS` and/or `prevResult` are not provided, the plugin should clean up as \
         many resources as possible (e.g. releasing IPAM allocations) and return a successful \
         response."
    )
    .until("1.0.0")]),
    s!("spec/check.prev-result", CHECK, Plugin, [since(
        "0.4.0",
        Must,
        "The plugin must consult the `prevResult` to determine the expected interfaces and \
         addresses."
    )]),
    s!("spec/check.later-changes", CHECK, Plugin, [
        since(
            "0.4.0",
            Must,
            "The plugin must allow for a later chained plugin to have modified networking \
             resources, e.g. routes."
        )
        .until("1.0.0"),
        since(
            "1.0.0",
            Must,
            "The plugin must allow for a later chained plugin to have modified networking \
             resources, e.g. routes, on `ADD`."
        ),
    ]),
    s!("spec/check.listed-resources", CHECK, Plugin, [since(
        "0.4.0",
        Should,
        "The plugin should return an error if a resource included in the CNI Result type \
         (interface, address or route) was created by the plugin, and is listed in `prevResult`, \
         but is missing or in an invalid state."
    )]),
    s!("spec/check.other-resources", CHECK, Plugin, [since(
        "0.4.0",
        Should,
        "The plugin should return an error if other resources not tracked in the Result type \
         such as the following are missing or are in an invalid state: Firewall rules Traffic \
         shaping controls IP reservations External dependencies such as a daemon required for \
         connectivity etc."
    )]),
    s!("spec/check.unreachable", CHECK, Plugin, [since(
        "0.4.0",
        Should,
        "The plugin should return an error if it is aware of a condition where the container is \
         generally unreachable."
    )])
    .not_black_box(
        "It binds only what the plugin is aware of; the suite cannot know what a plugin knows \
         about the container's reachability.",
    ),
    s!("spec/check.after-add", CHECK, Plugin, [since(
        "0.4.0",
        Must,
        "The plugin must handle `CHECK` being called immediately after an `ADD`"
    )]),
    s!("spec/check.convergence", CHECK, Plugin, [since(
        "0.4.0",
        Should,
        "and therefore should allow a reasonable convergence delay for any asynchronous \
         resources."
    )]),
    s!("spec/check.delegate", CHECK, Delegating, [since(
        "0.4.0",
        Should,
        "The plugin should call `CHECK` on any delegated (e.g. IPAM) plugins and pass any errors \
         on to its caller."
    )]),
    s!("spec/check.output", CHECK, Plugin, [since(
        "0.4.0",
        Must,
        "The plugin must return either nothing or an error."
    )
    .until("1.0.0")]),
    s!("spec/status.ready", STATUS, Plugin, [since(
        "1.1.0",
        Must,
        "A plugin must exit with a zero (success) return code if the plugin is ready to service \
         ADD requests."
    )])
    .note(
        "STATUS is missing from section 2's list of `CNI_COMMAND` values (\"`ADD`, `DEL`, \
         `CHECK`, `GC`, or `VERSION`\") and from \"CNI defines 5 operations\"; its own section \
         defines it. The suite reads STATUS as an operation of 1.1.0.",
    ),
    s!("spec/status.not-ready", STATUS, Plugin, [since(
        "1.1.0",
        Must,
        "If the plugin knows that it is not able to service ADD requests, it must exit with a \
         non-zero return code and output an error on standard out (see below)."
    )]),
    s!("spec/status.service", STATUS, Plugin, [since(
        "1.1.0",
        Should,
        "For example, if a plugin relies on an external service or daemon, it should return an \
         error to `STATUS` if that service is unavailable."
    )])
    .not_black_box(
        "The suite does not know which services a plugin relies on, so it cannot take one away; \
         a delegated plugin is the one service it knows (spec/status.delegate).",
    ),
    s!("spec/status.exhausted", STATUS, Plugin, [since(
        "1.1.0",
        Should,
        "Likewise, if a plugin has a limited number of resources (e.g. IP addresses, hardware \
         queues), it should return an error if those resources are exhausted and no new `ADD` \
         requests can be serviced."
    )]),
    s!("spec/status.not-relied", STATUS, Plugin, [since(
        "1.1.0",
        Must,
        "A plugin MUST NOT rely on `STATUS` being called."
    )]),
    s!("spec/status.other-operations", STATUS, Plugin, [since(
        "1.1.0",
        Should,
        "Plugins should always expect other CNI operations (like `ADD`, `DEL`, etc) even if \
         `STATUS` returns an error."
    )]),
    s!("spec/status.delegate", STATUS, Delegating, [since(
        "1.1.0",
        Must,
        "If a plugin relies on a delegated plugin (e.g. IPAM) to service `ADD` requests, it must \
         also execute a `STATUS` request to that plugin when it receives a `STATUS` request for \
         itself."
    )]),
    s!("spec/status.delegate-error", STATUS, Delegating, [since(
        "1.1.0",
        Should,
        "If the delegated plugin return an error result, the executing plugin should return an \
         error result."
    )]),
    s!("spec/version.output", VERSION, Plugin, [since(
        "1.0.0",
        Should,
        "The plugin should output via standard-out a json-serialized version result object (see \
         below)."
    )]),
    s!("spec/gc.stale", GC, Plugin, [since(
        "1.1.0",
        Should,
        "A plugin SHOULD remove as many stale resources as possible."
    )]),
    s!("spec/gc.ipam", GC, Plugin, [since(
        "1.1.0",
        Should,
        "For example, a plugin should remove any IPAM reservations associated with attachments \
         not in the provided list."
    )]),
    s!("spec/gc.no-error", GC, Plugin, [since(
        "1.1.0",
        Should,
        "Plugins should generally complete a `GC` action without error."
    )]),
    s!("spec/gc.continue", GC, Plugin, [since(
        "1.1.0",
        Should,
        "If an error is encountered, a plugin should continue; removing as many resources as \
         possible, and report the errors back to the runtime."
    )]),
    s!("spec/gc.forward", GC, Delegating, [since(
        "1.1.0",
        Must,
        "Plugins MUST, additionally, forward any GC calls to delegated plugins they are \
         configured to use (see section 4)."
    )]),
    s!("spec/gc.attachments", GC, Runtime, [since(
        "1.1.0",
        Must,
        "The runtime must provide a JSON-serialized plugin configuration object (defined below) \
         on standard in. It contains an additional key; `cni.dev/attachments` (array of \
         objects): The list of **still valid** attachments to this network"
    )])
    .note(
        "The key as the spec-v1.1.0 tag spells it. libcni has always sent \
         `cni.dev/valid-attachments`; since containernetworking/cni#1103 it sends both keys, and \
         the spec text names `cni.dev/valid-attachments`. The suite sends both, as a runtime \
         does, and checks that a plugin takes either alone (gc.key-names).",
    ),
    // Section 3: executing a network configuration.
    s!("spec/runtime.parallel", LIFECYCLE, Runtime, [since(
        "0.4.0",
        Must,
        "The container runtime must not invoke parallel operations for the same container, but \
         is allowed to invoke parallel operations for different containers."
    )]),
    s!("spec/lifecycle.concurrent", LIFECYCLE, Plugin, [since(
        "1.0.0",
        Must,
        "Plugins must handle being executed concurrently across different containers."
    )]),
    s!("spec/lifecycle.locking", LIFECYCLE, Plugin, [since(
        "1.0.0",
        Must,
        "If necessary, they must implement locking on shared resources (e.g. IPAM databases)."
    )]),
    // Section 4: delegation.
    s!("spec/delegation.ipam-determines", DELEGATION, Ipam, [since(
        "0.4.0",
        Must,
        "The IPAM plugin must determine the interface IP/subnet, Gateway and Routes and return \
         this information to the \"main\" plugin to apply."
    )])
    .note(
        "The spec defines a network as \"a group of endpoints that are uniquely addressable\"; \
         the suite reads an address that another attachment of the network holds as not an \
         address the IPAM plugin may determine for this one.",
    ),
    s!("spec/delegation.same-env", PROTOCOL, Delegating, [
        since(
            "0.4.0",
            Must,
            "The IPAM Plugin must receive all the same environment variables that were passed in \
             to the CNI plugin."
        )
        .until("1.0.0"),
        since(
            "1.0.0",
            Must,
            "The delegated plugin must receive all the same environment variables that were \
             passed in to the CNI plugin."
        ),
    ]),
    s!("spec/delegation.cni-path", PROCEDURE, Delegating, [since(
        "1.0.0",
        Should,
        "When a plugin executes a delegated plugin, it should: Look up the plugin binary by \
         searching the directories provided in `CNI_PATH` environment variable."
    )]),
    s!("spec/delegation.same-input", PROCEDURE, Delegating, [since(
        "1.0.0",
        Should,
        "When a plugin executes a delegated plugin, it should: [...] Execute that plugin with the \
         same environment and configuration that it received."
    )]),
    s!("spec/delegation.stderr", PROCEDURE, Delegating, [since(
        "1.0.0",
        Should,
        "When a plugin executes a delegated plugin, it should: [...] Ensure that the delegated \
         plugin's stderr is output to the calling plugin's stderr."
    )]),
    s!("spec/delegation.execute", PROCEDURE, Delegating, [
        since(
            "1.0.0",
            Must,
            "If a plugin is executed with `CNI_COMMAND=CHECK` or `DEL`, it must also execute any \
             delegated plugins."
        )
        .until("1.1.0"),
        since(
            "1.1.0",
            Must,
            "If a plugin is executed with `CNI_COMMAND=CHECK`, `DEL`, or `GC`, it must also \
             execute any delegated plugins."
        ),
    ]),
    s!("spec/delegation.errors", PROCEDURE, Delegating, [since(
        "1.0.0",
        Should,
        "If any of the delegated plugins return error, error should be returned by the upper \
         plugin."
    )]),
    s!("spec/delegation.add-failure", PROCEDURE, Delegating, [since(
        "1.0.0",
        Should,
        "If, on `ADD`, a delegated plugin fails, the \"upper\" plugin should execute again with \
         `DEL` before returning failure."
    )]),
    // Section 1 of 0.4.0 and older: how an interface plugin uses IPAM.
    s!("spec/overview.assign-ip", RESULTS, Interface, [
        since(
            "0.2.0",
            Should,
            "It should then assign the IP to the interface and setup the routes consistent with \
             IP Address Management section by invoking appropriate IPAM plugin."
        )
        .until("0.4.0"),
        since(
            "0.4.0",
            Should,
            "It should then assign the IP to the interface and setup the routes consistent with \
             the IP Address Management section by invoking appropriate IPAM plugin."
        )
        .until("1.0.0"),
    ]),
    // Section 5: result types.
    s!("spec/result.output", RESULTS, Plugin, [since(
        "1.1.0",
        Must,
        "For certain operations, plugins must output result information."
    )]),
    s!("spec/result.json-stdout", RESULTS, Plugin, [since(
        "1.1.0",
        Should,
        "The output should be serialized as JSON on standard out."
    )]),
    s!("spec/result.add-keys", ADD_SUCCESS, Plugin, [
        since(
            "0.4.0",
            Must,
            "here the `cniVersion` returned by the plugin in the result must be consistent with \
             the `cniVersion` specified in Network Configuration."
        )
        .until("1.0.0"),
        since(
            "1.0.0",
            Must,
            "Plugins must output a JSON object with the following keys upon a successful `ADD` \
             operation: `cniVersion`: The same version supplied on input"
        ),
    ]),
    s!("spec/result.sandbox", ADD_SUCCESS, Interface, [
        since(
            "0.3.0",
            Must,
            "This item must be provided for interfaces created or moved into a sandbox like a \
             network namespace or a hypervisor/VM."
        )
        .until("1.0.0"),
        since(
            "1.0.0",
            Should,
            "For interfaces created inside the container, this should be the value passed via \
             `CNI_NETNS`."
        ),
    ]),
    s!("spec/result.sandbox-path", ADD_SUCCESS, Interface, [since(
        "0.3.0",
        Should,
        "`sandbox` (string): container/namespace-based environments should return the full \
         filesystem path to the network namespace of that sandbox."
    )
    .until("1.0.0")]),
    s!("spec/result.ips-from-ipam", ADD_SUCCESS, Interface, [since(
        "0.3.0",
        Should,
        "The `ips` and `dns` items should be the same output as was returned by the IPAM plugin \
         (see IP Allocation for details) except that the plugin should fill in the `interface` \
         indexes appropriately, which are missing from IPAM plugin output since IPAM plugins \
         should be unaware of interfaces."
    )
    .until("1.0.0")]),
    s!("spec/result.prev", ADD_SUCCESS, Chained, [since(
        "1.0.0",
        Must,
        "Plugins provided a `prevResult` key as part of their request configuration must output \
         it as their result, with any possible modifications made by that plugin included."
    )]),
    s!("spec/result.prev-unchanged", ADD_SUCCESS, Chained, [since(
        "1.0.0",
        Must,
        "If a plugin makes no changes that would be reflected in the _Success result_ type, then \
         it must output a result equivalent to the provided `prevResult`."
    )]),
    s!("spec/result.ipam-abbreviated", IPAM_RESULT, Ipam, [
        since(
            "0.4.0",
            Should,
            "Note that unlike regular CNI plugins, IPAM plugins should return an abbreviated \
             `Result` structure that does not include the `interfaces` key"
        )
        .until("1.0.0"),
        since(
            "1.0.0",
            Must,
            "Delegated IPAM plugins must return an abbreviated _Success_ object. Specifically, it \
             is missing the `interfaces` array, as well as the `interface` entry in `ips`."
        ),
    ]),
    s!("spec/result.ipam-no-interface-index", IPAM_RESULT, Ipam, [since(
        "0.3.0",
        Should,
        "IPAM plugins should not return this key since they have no information about network \
         interfaces."
    )
    .until("1.0.0")]),
    s!("spec/result.version", VERSION_RESULT, Plugin, [since(
        "1.0.0",
        Must,
        "Plugins must output a JSON object with the following keys upon a `VERSION` operation: \
         `cniVersion`: The value of `cniVersion` specified on input `supportedVersions`: A list \
         of supported specification versions"
    )])
    .note(
        "SPEC 1.1.0 says this twice, under \"VERSION Success\" and \"Version\"; the two agree.",
    ),
    s!("spec/result.error-keys", ERROR_RESULT, Plugin, [
        since(
            "1.0.0",
            Should,
            "Plugins should output a JSON object with the following keys if they encounter an \
             error: `cniVersion`: The same value as provided by the configuration `code`: A \
             numeric error code, see below for reserved codes. `msg`: A short message \
             characterizing the error."
        )
        .until("1.1.0"),
        since(
            "1.1.0",
            Should,
            "Plugins should output a JSON object with the following keys if they encounter an \
             error: `cniVersion`: The protocol version in use - \"1.1.0\" `code`: A numeric \
             error code, see below for reserved codes. `msg`: A short message characterizing the \
             error."
        ),
    ]),
    s!("spec/errors.code-2", ERROR_RESULT, Plugin, [since(
        "0.2.0",
        Must,
        "The error message must contain the key and value of the unsupported field."
    )]),
    s!("spec/errors.code-4", ERROR_RESULT, Plugin, [since(
        "0.4.0",
        Must,
        "The error message must contain the names of invalid variables."
    )]),
    s!("spec/errors.unsupported-version", ADD_SUCCESS, Plugin, [since(
        "0.4.0",
        Should,
        "If the `cniVersion` in the network configuration is not supported by the plugin, the \
         plugin should return an error code 1 (see Well-known Error Codes for details)."
    )
    .until("1.0.0")]),
];
