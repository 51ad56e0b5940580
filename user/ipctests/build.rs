//! Link the IPC conformance program at the root task's load address: it runs as the root
//! task of the `ipc` boot scenarios, and root servers are placed at their link addresses.
fn main() {
    println!("cargo:rustc-link-arg-bins=--image-base=0x1000000");
    println!("cargo:rustc-link-arg-bins=--no-pie");
}
