//! Packs the price catalog snapshot (`conf/catalog/pricing/*.json`) into the binary, each file
//! deflate-compressed: the catalog is ~2.3 MB of JSON that is read once at start-up, and
//! embedded as it is, every page of it would stay resident.

use std::io::Write;
use std::path::Path;

type Failed = Box<dyn std::error::Error>;

/// An I/O error with the path it happened on.
fn at(path: &Path) -> impl Fn(std::io::Error) -> Failed + '_ {
    move |e| format!("{}: {e}", path.display()).into()
}

fn main() -> Result<(), Failed> {
    let dir = Path::new("conf/catalog/pricing");
    println!("cargo:rerun-if-changed={}", dir.display());
    let out_dir = std::env::var("OUT_DIR")?;
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map_err(at(dir))?
        .filter_map(Result::ok)
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            name.strip_suffix(".json").map(str::to_string)
        })
        .collect();
    names.sort();
    let mut index = String::from("pub(crate) const FILES: &[(&str, &[u8])] = &[\n");
    for stem in &names {
        let path = dir.join(format!("{stem}.json"));
        println!("cargo:rerun-if-changed={}", path.display());
        let text = std::fs::read(&path).map_err(at(&path))?;
        let mut packed =
            flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::best());
        packed.write_all(&text).map_err(at(&path))?;
        let packed = packed.finish().map_err(at(&path))?;
        let target = Path::new(&out_dir).join(format!("{stem}.deflate"));
        std::fs::write(&target, packed).map_err(at(&target))?;
        index.push_str(&format!(
            "    ({stem:?}, include_bytes!(concat!(env!(\"OUT_DIR\"), \"/{stem}.deflate\"))),\n"
        ));
    }
    index.push_str("];\n");
    let target = Path::new(&out_dir).join("catalog_snapshot.rs");
    std::fs::write(&target, index).map_err(at(&target))?;
    Ok(())
}
