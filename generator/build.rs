//! askama compiles the templates into the generator; rebuild when one changes.

fn main() {
    println!("cargo:rerun-if-changed=../templates");
}
