//! Link the memory checks at the root task's fixed load address (root servers are placed
//! at their link addresses, virtual = physical, as an X.2 boot loader does).
fn main() {
    println!("cargo:rustc-link-arg-bins=--image-base=0x1000000");
    println!("cargo:rustc-link-arg-bins=--no-pie");
}
