//! `sqlx::migrate!` embeds the migrations when the crate compiles; without
//! this, a migration added to the directory would not rebuild the crate.
fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
