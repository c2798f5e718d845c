//! Says at build time whether the PostgreSQL tests will run.

fn main() {
    println!("cargo:rerun-if-env-changed=DATABASE_URL");
    println!("cargo:rerun-if-changed=migrations");
    let postgres = std::env::var("DATABASE_URL").is_ok_and(|u| u.starts_with("postgres"));
    if !postgres && std::env::var("PROFILE").is_ok_and(|p| p == "debug") {
        println!(
            "cargo:warning=DATABASE_URL is not a postgres:// URL: the PostgreSQL tests of payments-sqlx will be SKIPPED"
        );
    }
}
