//! The example portal: `cargo run -p payments-examples`, then open the address it prints.

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let config = portal::Config::from_env()?;
    let listener = tokio::net::TcpListener::bind(config.addr).await?;
    let portal = portal::Portal::new(config).await?;
    let config = portal.config();
    println!("Portale dei pagamenti");
    for body in portal.bodies() {
        println!("  body:     {} ({})", body.creditor.name, body.slug);
    }
    println!(
        "  database: {}",
        if config.database_url.is_some() {
            "DATABASE_URL"
        } else {
            "SQLite in the data directory"
        }
    );
    match &config.smtp_url {
        Some(_) => println!("  mail:     SMTP_URL"),
        None => println!("  mail:     .eml files in {}", config.mail_dir().display()),
    }
    println!("  data:     {}", config.data_dir.display());
    println!(
        "\nOpen {}/ in a browser (Ctrl-C stops it).",
        config.public_url
    );
    portal.serve(listener).await?;
    Ok(())
}
