//! The migrations are embedded at compile time; a new or changed migration
//! file must rebuild the crate, which cargo does not know without this.

fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
