//! Link the system check at its own address (it runs in its own space, loaded by the root
//! task; distinct link addresses let a loader stage every module in its own space).
fn main() {
    println!("cargo:rustc-link-arg-bins=--image-base=0x2C00000");
    println!("cargo:rustc-link-arg-bins=--no-pie");
}
