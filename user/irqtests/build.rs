//! Link the interrupt tests at the root task's load address: they run as the root task
//! of the `interrupts` boot scenario, and root servers are placed at their link addresses.
fn main() {
    println!("cargo:rustc-link-arg-bins=--image-base=0x1000000");
    println!("cargo:rustc-link-arg-bins=--no-pie");
}
