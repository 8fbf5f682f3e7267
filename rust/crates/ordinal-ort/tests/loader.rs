//! Loader tests against the real ONNX Runtime shared library (plain fixtures: Debian does not
//! package `rstest`). The library is `ORT_DYLIB_PATH` when set, else the one the project's
//! virtual environment ships in the onnxruntime wheel; a missing library fails the tests.

use std::path::{Path, PathBuf};

use ordinal_ort::{
    Backend, DynamicBackend, OrtError, Requirement, SessionOptions, Tensor, TensorData, Version,
};

fn ort_library() -> PathBuf {
    if let Some(path) = std::env::var_os("ORT_DYLIB_PATH") {
        return PathBuf::from(path);
    }
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join(
        "../../../.venv/lib/python3.11/site-packages/onnxruntime/capi/libonnxruntime.so.1.32.0",
    );
    assert!(
        venv.is_file(),
        "no ONNX Runtime library: set ORT_DYLIB_PATH or install the project's venv ({})",
        venv.display()
    );
    venv
}

fn requirement(min: &str, api_level: u32) -> Requirement {
    Requirement {
        min_version: Version::parse(min).unwrap(),
        api_level,
    }
}

const OPTIONS: SessionOptions = SessionOptions {
    intra_op_threads: 1,
    inter_op_threads: 1,
};

// --- a minimal ONNX model, protobuf-encoded by hand so the test needs no Python ---

fn varint(mut v: u64, out: &mut Vec<u8>) {
    loop {
        let byte = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

fn field_varint(field: u64, v: u64, out: &mut Vec<u8>) {
    varint(field << 3, out);
    varint(v, out);
}

fn field_bytes(field: u64, bytes: &[u8], out: &mut Vec<u8>) {
    varint((field << 3) | 2, out);
    varint(bytes.len() as u64, out);
    out.extend_from_slice(bytes);
}

/// ValueInfoProto with a tensor type whose dims are symbolic names or fixed sizes.
fn value_info(name: &str, elem_type: u64, dims: &[Result<u64, &str>]) -> Vec<u8> {
    let mut shape = Vec::new();
    for dim in dims {
        let mut d = Vec::new();
        match dim {
            Ok(v) => field_varint(1, *v, &mut d),
            Err(p) => field_bytes(2, p.as_bytes(), &mut d),
        }
        field_bytes(1, &d, &mut shape);
    }
    let mut tensor = Vec::new();
    field_varint(1, elem_type, &mut tensor);
    field_bytes(2, &shape, &mut tensor);
    let mut type_proto = Vec::new();
    field_bytes(1, &tensor, &mut type_proto);
    let mut out = Vec::new();
    field_bytes(1, name.as_bytes(), &mut out);
    field_bytes(2, &type_proto, &mut out);
    out
}

fn node(op: &str, inputs: &[&str], outputs: &[&str]) -> Vec<u8> {
    let mut out = Vec::new();
    for i in inputs {
        field_bytes(1, i.as_bytes(), &mut out);
    }
    for o in outputs {
        field_bytes(2, o.as_bytes(), &mut out);
    }
    field_bytes(4, op.as_bytes(), &mut out);
    out
}

/// `z = x + y` (float32, shape (n, 2)) and `ids_out = Identity(ids)` (int64, shape (n,)).
fn tiny_model(dir: &Path) -> PathBuf {
    let mut graph = Vec::new();
    field_bytes(1, &node("Add", &["x", "y"], &["z"]), &mut graph);
    field_bytes(1, &node("Identity", &["ids"], &["ids_out"]), &mut graph);
    field_bytes(2, b"tiny", &mut graph);
    field_bytes(11, &value_info("x", 1, &[Err("n"), Ok(2)]), &mut graph);
    field_bytes(11, &value_info("y", 1, &[Err("n"), Ok(2)]), &mut graph);
    field_bytes(11, &value_info("ids", 7, &[Err("n")]), &mut graph);
    field_bytes(12, &value_info("z", 1, &[Err("n"), Ok(2)]), &mut graph);
    field_bytes(12, &value_info("ids_out", 7, &[Err("n")]), &mut graph);
    let mut opset = Vec::new();
    field_bytes(1, b"", &mut opset);
    field_varint(2, 13, &mut opset);
    let mut model = Vec::new();
    field_varint(1, 8, &mut model); // ir_version
    field_bytes(7, &graph, &mut model);
    field_bytes(8, &opset, &mut model);
    let path = dir.join("tiny.onnx");
    std::fs::write(&path, model).unwrap();
    path
}

#[test]
fn good_path_loads_reports_version_and_runs_a_graph() {
    let library = ort_library();
    let backend = DynamicBackend::load(&library, &requirement("1.16.0", 16)).unwrap();
    assert!(backend.version() >= Version::parse("1.16.0").unwrap());
    assert_eq!(backend.api_level(), 16);
    assert_eq!(backend.location(), library.as_path());

    // The first table entries: CreateStatus / GetErrorCode / GetErrorMessage / ReleaseStatus.
    assert_eq!(
        backend.status_roundtrip(2, "bad argument x"),
        (2, "bad argument x".into())
    );

    let dir = tempfile::tempdir().unwrap();
    let session = backend
        .load_session(&tiny_model(dir.path()), &OPTIONS)
        .unwrap();
    assert_eq!(session.input_names(), ["x", "y", "ids"]);
    assert_eq!(session.output_names(), ["z", "ids_out"]);
    let x = Tensor::f32(vec![3, 2], vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]).unwrap();
    let y = Tensor::f32(vec![3, 2], vec![0.5, 0.25, -3.0, 1.0, 0.0, -6.0]).unwrap();
    let ids = Tensor::i64(vec![3], vec![7, -1, 1 << 40]).unwrap();
    // Outputs come back in the order asked, by name, whatever the graph's order.
    let out = session
        .run(&[("ids", ids), ("x", x), ("y", y)], &["ids_out", "z"])
        .unwrap();
    assert_eq!(
        out[0],
        Tensor {
            shape: vec![3],
            data: TensorData::I64(vec![7, -1, 1 << 40])
        }
    );
    assert_eq!(out[1].shape, vec![3, 2]);
    assert_eq!(out[1].as_f32("z").unwrap(), [1.5, 2.25, 0.0, 5.0, 5.0, 0.0]);

    // Concurrent runs on one session (the service does this).
    std::thread::scope(|s| {
        for k in 0..4 {
            let session = &session;
            s.spawn(move || {
                let v = k as f32;
                let x = Tensor::f32(vec![1, 2], vec![v, v]).unwrap();
                let y = Tensor::f32(vec![1, 2], vec![1.0, 1.0]).unwrap();
                let ids = Tensor::i64(vec![1], vec![k]).unwrap();
                let out = session
                    .run(&[("x", x), ("y", y), ("ids", ids)], &["z"])
                    .unwrap();
                assert_eq!(out[0].as_f32("z").unwrap(), [v + 1.0, v + 1.0]);
            });
        }
    });
}

#[test]
fn run_errors_are_typed_and_name_the_call() {
    let backend = DynamicBackend::load(&ort_library(), &requirement("1.16.0", 16)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let session = backend
        .load_session(&tiny_model(dir.path()), &OPTIONS)
        .unwrap();
    let x = Tensor::f32(vec![1, 2], vec![1.0, 2.0]).unwrap();
    let err = session.run(&[("x", x)], &["z"]).unwrap_err();
    assert!(
        matches!(&err, OrtError::Invalid { what, .. } if what == "y"),
        "{err}"
    );
    let (x, y) = (
        Tensor::f32(vec![1, 2], vec![1.0, 2.0]).unwrap(),
        Tensor::f32(vec![1, 3], vec![0.0; 3]).unwrap(),
    );
    let ids = Tensor::i64(vec![1], vec![0]).unwrap();
    let err = session
        .run(&[("x", x), ("y", y), ("ids", ids)], &["z"])
        .unwrap_err();
    assert!(matches!(err, OrtError::Call { call: "Run", .. }), "{err}");
    let err = backend
        .load_session(&dir.path().join("absent.onnx"), &OPTIONS)
        .err()
        .unwrap();
    assert!(err.to_string().contains("absent.onnx"), "{err}");
    assert!(Tensor::f32(vec![2, 2], vec![1.0]).is_err());
}

#[test]
fn missing_file_names_the_path_and_required_version() {
    let err = DynamicBackend::load(
        Path::new("/nonexistent/libonnxruntime.so"),
        &requirement("1.20.0", 20),
    )
    .err()
    .unwrap();
    assert!(matches!(err, OrtError::LibraryMissing { .. }));
    let text = err.to_string();
    assert!(
        text.contains("/nonexistent/libonnxruntime.so") && text.contains("1.20.0"),
        "{text}"
    );
}

#[test]
fn wrong_file_is_refused() {
    // Not a shared library at all.
    let dir = tempfile::tempdir().unwrap();
    let text_file = dir.path().join("libonnxruntime.so");
    std::fs::write(&text_file, "not an ELF file").unwrap();
    let err = DynamicBackend::load(&text_file, &requirement("1.20.0", 20))
        .err()
        .unwrap();
    assert!(matches!(err, OrtError::LibraryOpen { .. }), "{err}");
    assert!(err.to_string().contains(&*text_file.to_string_lossy()));

    // A real shared library that is not ONNX Runtime.
    let libc = [
        "/lib/x86_64-linux-gnu/libc.so.6",
        "/lib/aarch64-linux-gnu/libc.so.6",
        "/usr/lib/libc.so.6",
    ]
    .into_iter()
    .map(Path::new)
    .find(|p| p.is_file())
    .expect("a libc.so.6 to load");
    let err = DynamicBackend::load(libc, &requirement("1.20.0", 20))
        .err()
        .unwrap();
    assert!(
        matches!(
            err,
            OrtError::NotOnnxRuntime {
                symbol: "OrtGetApiBase",
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("libc.so.6") && err.to_string().contains("1.20.0"));
}

#[test]
fn too_old_library_is_refused_with_found_and_required_versions() {
    let library = ort_library();
    let err = DynamicBackend::load(&library, &requirement("99.0.0", 16))
        .err()
        .unwrap();
    let OrtError::TooOld {
        found, required, ..
    } = &err
    else {
        panic!("expected TooOld, got {err}");
    };
    assert_eq!(*required, Version::parse("99.0.0").unwrap());
    let text = err.to_string();
    assert!(
        text.contains(&found.to_string()) && text.contains("99.0.0"),
        "{text}"
    );
    assert!(text.contains(&*library.to_string_lossy()));
}

#[test]
fn api_level_above_the_library_is_refused_not_dereferenced() {
    // The version check passes but the library has no table for this level: GetApi returns
    // NULL (the null-pointer case the `ort` crate's issues 229 and 388 panic on).
    let library = ort_library();
    let err = DynamicBackend::load(&library, &requirement("1.0.0", 9999))
        .err()
        .unwrap();
    assert!(
        matches!(
            err,
            OrtError::NoApi {
                api_level: 9999,
                ..
            }
        ),
        "{err}"
    );
    let text = err.to_string();
    assert!(
        text.contains("9999") && text.contains(&*library.to_string_lossy()),
        "{text}"
    );
}

#[test]
fn unset_path_is_a_clear_error() {
    // Only checks the error text; `from_env` itself reads the process environment, which
    // tests must not mutate while other tests run in parallel.
    assert!(OrtError::PathNotSet.to_string().contains("ORT_DYLIB_PATH"));
}
