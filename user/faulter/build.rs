//! Link the faulter at its fixed load address (booted as the root server σ1 in tests).
fn main() {
    println!("cargo:rustc-link-arg-bins=--image-base=0x1800000");
    println!("cargo:rustc-link-arg-bins=--no-pie");
}
