//! A valid wasm32-wasip2 component of the wrong world (a WASI command), for
//! the host's test that such a component is refused as a policy.

fn main() {
    println!("I am a command, not a policy");
}
