//! Rebuild the BPF object when the linker changes: the object's code depends on it.
fn main() {
    if let Ok(linker) = which::which("bpf-linker") {
        println!("cargo:rerun-if-changed={}", linker.display());
    }
}
