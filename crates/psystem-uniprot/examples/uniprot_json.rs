//! Print the entries of a UniProtKB flat file (plain or gzip) as pretty JSON, optionally only one accession.
//!
//! `cargo run -p psystem-uniprot --example uniprot_json -- FILE [ACCESSION]`

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let path = args.next().ok_or("usage: uniprot_json FILE [ACCESSION]")?;
    let want = args.next();
    for entry in psystem_uniprot::open_path(&path)? {
        let entry = entry?;
        if want.as_deref().is_none_or(|w| w == entry.primary_accession) {
            println!("{}", serde_json::to_string_pretty(&entry)?);
        }
    }
    Ok(())
}
