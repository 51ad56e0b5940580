//! Link the benchmark at the root task's load address (it runs as the root task).
fn main() {
    println!("cargo:rustc-link-arg-bins=--image-base=0x1000000");
    println!("cargo:rustc-link-arg-bins=--no-pie");
}
