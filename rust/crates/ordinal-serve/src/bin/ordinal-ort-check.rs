//! `ordinal-ort-check LIBRARY [--bundle DIR | --min-version X.Y.Z --api-level N]`
//!
//! Loads an ONNX Runtime shared library exactly as `ordinal-serve` will (same loader, same
//! checks) and prints its version. The requirement comes from a bundle's
//! `onnxruntime` section (read, not verified: the service verifies the bundle) or the flags.
//! Exit status 0 when the library is usable, 1 when it is refused, 2 on bad arguments.
//! Used by `rust/scripts/ort-bootstrap`.

use std::path::PathBuf;
use std::process::ExitCode;

use ordinal_ort::{Backend, DynamicBackend, Requirement, Version};

fn usage() -> ExitCode {
    eprintln!(
        "usage: ordinal-ort-check LIBRARY [--bundle DIR | --min-version X.Y.Z --api-level N]"
    );
    ExitCode::from(2)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(library) = args.first().map(PathBuf::from) else {
        return usage();
    };
    let mut min_version = Version::parse("1.0.0").expect("literal");
    let mut api_level = 1u32;
    let mut rest = args[1..].iter();
    while let Some(flag) = rest.next() {
        let Some(value) = rest.next() else {
            return usage();
        };
        match flag.as_str() {
            "--min-version" => match Version::parse(value) {
                Some(v) => min_version = v,
                None => return usage(),
            },
            "--api-level" => match value.parse() {
                Ok(v) => api_level = v,
                Err(_) => return usage(),
            },
            "--bundle" => {
                let path = PathBuf::from(value).join("bundle.json");
                let parsed = std::fs::read(&path)
                    .map_err(|e| e.to_string())
                    .and_then(|b| {
                        serde_json::from_slice::<serde_json::Value>(&b).map_err(|e| e.to_string())
                    });
                let meta = match parsed {
                    Ok(m) => m,
                    Err(e) => {
                        eprintln!("error: {}: {e}", path.display());
                        return ExitCode::from(2);
                    }
                };
                let ort = &meta["onnxruntime"];
                match (
                    ort["min_version"].as_str().and_then(Version::parse),
                    ort["api_version"]
                        .as_u64()
                        .and_then(|v| u32::try_from(v).ok()),
                ) {
                    (Some(v), Some(a)) => {
                        min_version = v;
                        api_level = a;
                    }
                    _ => {
                        eprintln!(
                            "error: {}: no usable onnxruntime.min_version/api_version",
                            path.display()
                        );
                        return ExitCode::from(2);
                    }
                }
            }
            _ => return usage(),
        }
    }
    let requirement = Requirement {
        min_version,
        api_level,
    };
    match DynamicBackend::load(&library, &requirement) {
        Ok(backend) => {
            println!("{}", backend.version());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
    }
}
