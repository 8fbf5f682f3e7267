//! [`Backend`] over `libonnxruntime.so` opened with `libloading`.

use std::ffi::{CStr, CString};
use std::os::raw::{c_char, c_int, c_void};
use std::path::{Path, PathBuf};
use std::ptr;
use std::sync::Arc;

use crate::sys::{self, OrtApi};
use crate::{
    Backend, OrtError, Requirement, Session, SessionOptions, Tensor, TensorData, Version,
    ORT_DYLIB_PATH,
};

/// The loaded library and its API table. The table points into the library's memory, so the
/// `Library` lives as long as any handle created from it (sessions hold an `Arc` of this).
struct Loaded {
    api: *const OrtApi,
    env: *mut sys::OrtEnv,
    // Dropped last (fields drop in declaration order): the env is released first.
    _library: libloading::Library,
}

// SAFETY: the API table is immutable static data inside the library, and `OrtEnv` is
// documented as shareable between threads (one env per process, used by all sessions).
unsafe impl Send for Loaded {}
unsafe impl Sync for Loaded {}

impl Loaded {
    fn api(&self) -> &OrtApi {
        // SAFETY: non-null and checked complete in `DynamicBackend::load`; valid while
        // `_library` is loaded, which outlives `self`.
        unsafe { &*self.api }
    }
}

impl Drop for Loaded {
    fn drop(&mut self) {
        if let Some(release) = self.api().ReleaseEnv {
            // SAFETY: `env` came from CreateEnv and every session holding it is gone (they
            // keep this `Loaded` alive through an `Arc`).
            unsafe { release(self.env) };
        }
    }
}

/// ONNX Runtime loaded at run time from a shared library.
pub struct DynamicBackend {
    inner: Arc<Loaded>,
    path: PathBuf,
    version: Version,
    api_level: u32,
}

impl DynamicBackend {
    /// Load the library named by `ORT_DYLIB_PATH`.
    pub fn from_env(requirement: &Requirement) -> Result<DynamicBackend, OrtError> {
        let path = std::env::var_os(ORT_DYLIB_PATH).ok_or(OrtError::PathNotSet)?;
        if path.is_empty() {
            return Err(OrtError::PathNotSet);
        }
        DynamicBackend::load(Path::new(&path), requirement)
    }

    /// Load `path`, refusing it unless it is ONNX Runtime >= `requirement.min_version` and
    /// hands out the C API at `requirement.api_level`.
    pub fn load(path: &Path, requirement: &Requirement) -> Result<DynamicBackend, OrtError> {
        let required = requirement.min_version;
        if !path.is_file() {
            return Err(OrtError::LibraryMissing {
                path: path.to_path_buf(),
                required,
            });
        }
        // SAFETY: loading a library runs its initialisers. The operator chose this path (via
        // ORT_DYLIB_PATH or the bundle's bootstrap) as ONNX Runtime; we cannot check more
        // before loading it, and we check the exported entry point and version right after.
        let library =
            unsafe { libloading::Library::new(path) }.map_err(|e| OrtError::LibraryOpen {
                path: path.to_path_buf(),
                required,
                reason: e.to_string(),
            })?;
        // SAFETY: `OrtGetApiBase` has had the signature `const OrtApiBase* (void)` in every
        // ONNX Runtime release; a library exporting that name with another signature is not
        // something we can detect.
        let get_api_base: sys::OrtGetApiBaseFn = unsafe {
            *library
                .get::<sys::OrtGetApiBaseFn>(b"OrtGetApiBase\0")
                .map_err(|e| OrtError::NotOnnxRuntime {
                    path: path.to_path_buf(),
                    symbol: "OrtGetApiBase",
                    required,
                    reason: e.to_string(),
                })?
        };
        // SAFETY: takes no arguments; returns a pointer to static data (or null, handled).
        let base = unsafe { get_api_base() };
        // SAFETY: checked non-null; the struct is static data in the library.
        let base = unsafe { base.as_ref() }.ok_or_else(|| OrtError::NotOnnxRuntime {
            path: path.to_path_buf(),
            symbol: "OrtGetApiBase",
            required,
            reason: "returned a null OrtApiBase".into(),
        })?;
        let (get_api, get_version) = match (base.GetApi, base.GetVersionString) {
            (Some(a), Some(v)) => (a, v),
            _ => {
                return Err(OrtError::NotOnnxRuntime {
                    path: path.to_path_buf(),
                    symbol: "OrtApiBase.GetApi/GetVersionString",
                    required,
                    reason: "null entry in OrtApiBase".into(),
                })
            }
        };
        // SAFETY: returns a pointer to a static NUL-terminated string (null handled).
        let version_ptr = unsafe { get_version() };
        let found_text = if version_ptr.is_null() {
            String::new()
        } else {
            // SAFETY: non-null, NUL-terminated static string per the C API.
            unsafe { CStr::from_ptr(version_ptr) }
                .to_string_lossy()
                .into_owned()
        };
        let found = Version::parse(&found_text).ok_or_else(|| OrtError::BadVersion {
            path: path.to_path_buf(),
            found: found_text.clone(),
            required,
        })?;
        if found < required {
            return Err(OrtError::TooOld {
                path: path.to_path_buf(),
                found,
                required,
            });
        }
        // SAFETY: GetApi accepts any level and returns null for levels the library lacks
        // (ONNX Runtime prints a line to stderr then); that null is handled below. Asking
        // for exactly the bundle's level means the table has at least the entries that level
        // defines, which include every entry in `sys::OrtApi` (all from level 1).
        let api = unsafe { get_api(requirement.api_level) };
        if api.is_null() {
            return Err(OrtError::NoApi {
                path: path.to_path_buf(),
                found,
                api_level: requirement.api_level,
                required,
            });
        }
        // SAFETY: non-null table of at least `size_of::<OrtApi>()` bytes (see above).
        let table = unsafe { &*api };
        let missing = sys::missing_entries(table);
        if !missing.is_empty() {
            return Err(OrtError::IncompleteApi {
                path: path.to_path_buf(),
                found,
                missing,
            });
        }
        let mut env: *mut sys::OrtEnv = ptr::null_mut();
        let logid = CString::new("ordinal-serve").expect("literal has no NUL");
        // SAFETY: valid NUL-terminated logid and out-pointer; checked entries are non-null.
        let status = unsafe {
            (table.CreateEnv.unwrap())(sys::ORT_LOGGING_LEVEL_WARNING, logid.as_ptr(), &mut env)
        };
        check(table, status, "CreateEnv")?;
        Ok(DynamicBackend {
            inner: Arc::new(Loaded {
                api,
                env,
                _library: library,
            }),
            path: path.to_path_buf(),
            version: found,
            api_level: requirement.api_level,
        })
    }

    /// Round-trip an error status through the library (`CreateStatus` -> `GetErrorCode` /
    /// `GetErrorMessage` -> `ReleaseStatus`); used by the loader tests to check that the
    /// first table entries sit where `sys::OrtApi` says.
    pub fn status_roundtrip(&self, code: i32, message: &str) -> (i32, String) {
        let api = self.inner.api();
        let text = CString::new(message.replace('\0', " ")).expect("NULs replaced");
        // SAFETY: valid NUL-terminated message; returns an owned status we release in `check`.
        let status = unsafe { (api.CreateStatus.unwrap())(code as c_int, text.as_ptr()) };
        match check(api, status, "CreateStatus") {
            Ok(()) => (0, String::new()),
            Err(OrtError::Call { code, message, .. }) => (code, message),
            Err(other) => (-1, other.to_string()),
        }
    }
}

/// Turn an `OrtStatus*` into a `Result`, releasing the status.
fn check(api: &OrtApi, status: sys::OrtStatusPtr, call: &'static str) -> Result<(), OrtError> {
    if status.is_null() {
        return Ok(());
    }
    // SAFETY: `status` is a non-null status returned by the library; we read its code and
    // message (valid until the status is released) and release it exactly once.
    unsafe {
        let code = (api.GetErrorCode.unwrap())(status);
        let msg_ptr = (api.GetErrorMessage.unwrap())(status);
        let message = if msg_ptr.is_null() {
            String::new()
        } else {
            CStr::from_ptr(msg_ptr).to_string_lossy().into_owned()
        };
        (api.ReleaseStatus.unwrap())(status);
        Err(OrtError::Call {
            call,
            code,
            message,
        })
    }
}

impl Backend for DynamicBackend {
    fn version(&self) -> Version {
        self.version
    }

    fn api_level(&self) -> u32 {
        self.api_level
    }

    fn location(&self) -> &Path {
        &self.path
    }

    fn load_session(
        &self,
        model: &Path,
        options: &SessionOptions,
    ) -> Result<Box<dyn Session>, OrtError> {
        Ok(Box::new(DynamicSession::new(
            self.inner.clone(),
            model,
            options,
        )?))
    }
}

/// Owned `OrtSessionOptions`, released on drop.
struct OptionsGuard<'a>(&'a OrtApi, *mut sys::OrtSessionOptions);
impl Drop for OptionsGuard<'_> {
    fn drop(&mut self) {
        // SAFETY: created by CreateSessionOptions, released once.
        unsafe { (self.0.ReleaseSessionOptions.unwrap())(self.1) }
    }
}

/// Owned `OrtValue`, released on drop.
struct ValueGuard<'a>(&'a OrtApi, *mut sys::OrtValue);
impl Drop for ValueGuard<'_> {
    fn drop(&mut self) {
        if !self.1.is_null() {
            // SAFETY: created by CreateTensorWithDataAsOrtValue or Run, released once.
            unsafe { (self.0.ReleaseValue.unwrap())(self.1) }
        }
    }
}

/// Owned `OrtTensorTypeAndShapeInfo`, released on drop.
struct InfoGuard<'a>(&'a OrtApi, *mut sys::OrtTensorTypeAndShapeInfo);
impl Drop for InfoGuard<'_> {
    fn drop(&mut self) {
        // SAFETY: created by GetTensorTypeAndShape, released once.
        unsafe { (self.0.ReleaseTensorTypeAndShapeInfo.unwrap())(self.1) }
    }
}

struct DynamicSession {
    loaded: Arc<Loaded>,
    session: *mut sys::OrtSession,
    memory_info: *mut sys::OrtMemoryInfo,
    inputs: Vec<String>,
    outputs: Vec<String>,
}

// SAFETY: ONNX Runtime documents `OrtSession::Run` as safe to call concurrently from several
// threads; the memory info is immutable after creation. Nothing else mutates the handles.
unsafe impl Send for DynamicSession {}
unsafe impl Sync for DynamicSession {}

impl DynamicSession {
    fn new(
        loaded: Arc<Loaded>,
        model: &Path,
        options: &SessionOptions,
    ) -> Result<DynamicSession, OrtError> {
        let api = loaded.api();
        let to_int = |n: usize, what: &str| {
            c_int::try_from(n).map_err(|_| OrtError::Invalid {
                what: what.into(),
                reason: format!("{n} threads is too many"),
            })
        };
        let intra = to_int(options.intra_op_threads, "intra_op_threads")?;
        let inter = to_int(options.inter_op_threads, "inter_op_threads")?;
        let path =
            CString::new(model.as_os_str().as_encoded_bytes()).map_err(|_| OrtError::Invalid {
                what: model.display().to_string(),
                reason: "path contains a NUL byte".into(),
            })?;
        let mut raw_options = ptr::null_mut();
        // SAFETY: out-pointer is valid; result checked.
        check(
            api,
            unsafe { (api.CreateSessionOptions.unwrap())(&mut raw_options) },
            "CreateSessionOptions",
        )?;
        let opts = OptionsGuard(api, raw_options);
        // SAFETY: `opts.1` is a live session-options object; plain integer arguments.
        unsafe {
            check(
                api,
                (api.SetIntraOpNumThreads.unwrap())(opts.1, intra),
                "SetIntraOpNumThreads",
            )?;
            check(
                api,
                (api.SetInterOpNumThreads.unwrap())(opts.1, inter),
                "SetInterOpNumThreads",
            )?;
            check(
                api,
                (api.SetSessionGraphOptimizationLevel.unwrap())(opts.1, sys::ORT_ENABLE_ALL),
                "SetSessionGraphOptimizationLevel",
            )?;
        }
        let mut session = ptr::null_mut();
        // SAFETY: env and options are live, path is NUL-terminated; ORT copies what it needs.
        check(
            api,
            unsafe {
                (api.CreateSession.unwrap())(loaded.env, path.as_ptr(), opts.1, &mut session)
            },
            "CreateSession",
        )
        .map_err(|e| match e {
            OrtError::Call {
                call,
                code,
                message,
            } => OrtError::Call {
                call,
                code,
                message: format!("{}: {message}", model.display()),
            },
            other => other,
        })?;
        drop(opts);
        let mut memory_info = ptr::null_mut();
        // SAFETY: constant enum arguments and a valid out-pointer.
        let status = unsafe {
            (api.CreateCpuMemoryInfo.unwrap())(
                sys::ORT_ARENA_ALLOCATOR,
                sys::ORT_MEM_TYPE_DEFAULT,
                &mut memory_info,
            )
        };
        if let Err(e) = check(api, status, "CreateCpuMemoryInfo") {
            // SAFETY: the session was created above and is not shared yet.
            unsafe { (api.ReleaseSession.unwrap())(session) };
            return Err(e);
        }
        let mut this = DynamicSession {
            loaded: loaded.clone(),
            session,
            memory_info,
            inputs: Vec::new(),
            outputs: Vec::new(),
        };
        this.inputs = this.names(true)?;
        this.outputs = this.names(false)?;
        Ok(this)
    }

    fn names(&self, inputs: bool) -> Result<Vec<String>, OrtError> {
        let api = self.loaded.api();
        let mut allocator = ptr::null_mut();
        // SAFETY: valid out-pointer; the default allocator is static and must not be freed.
        check(
            api,
            unsafe { (api.GetAllocatorWithDefaultOptions.unwrap())(&mut allocator) },
            "GetAllocatorWithDefaultOptions",
        )?;
        let mut count = 0usize;
        let (count_fn, name_fn, call) = if inputs {
            (
                api.SessionGetInputCount.unwrap(),
                api.SessionGetInputName.unwrap(),
                "SessionGetInputName",
            )
        } else {
            (
                api.SessionGetOutputCount.unwrap(),
                api.SessionGetOutputName.unwrap(),
                "SessionGetOutputName",
            )
        };
        // SAFETY: live session, valid out-pointer.
        check(api, unsafe { count_fn(self.session, &mut count) }, call)?;
        let mut names = Vec::with_capacity(count);
        for index in 0..count {
            let mut raw: *mut c_char = ptr::null_mut();
            // SAFETY: index < count; the name is allocated with `allocator` and freed below.
            check(
                api,
                unsafe { name_fn(self.session, index, allocator, &mut raw) },
                call,
            )?;
            // SAFETY: non-null NUL-terminated string on success.
            let name = unsafe { CStr::from_ptr(raw) }
                .to_string_lossy()
                .into_owned();
            // SAFETY: `raw` was allocated by `allocator` for us; freed exactly once.
            check(
                api,
                unsafe { (api.AllocatorFree.unwrap())(allocator, raw as *mut c_void) },
                "AllocatorFree",
            )?;
            names.push(name);
        }
        Ok(names)
    }

    fn read_output(&self, value: *mut sys::OrtValue, name: &str) -> Result<Tensor, OrtError> {
        let api = self.loaded.api();
        let mut info = ptr::null_mut();
        // SAFETY: `value` is a live output value; `info` is released by the guard.
        check(
            api,
            unsafe { (api.GetTensorTypeAndShape.unwrap())(value, &mut info) },
            "GetTensorTypeAndShape",
        )?;
        let info = InfoGuard(api, info);
        let mut element: c_int = 0;
        let mut rank = 0usize;
        // SAFETY: live info object, valid out-pointers, `shape` has `rank` slots.
        let shape = unsafe {
            check(
                api,
                (api.GetTensorElementType.unwrap())(info.1, &mut element),
                "GetTensorElementType",
            )?;
            check(
                api,
                (api.GetDimensionsCount.unwrap())(info.1, &mut rank),
                "GetDimensionsCount",
            )?;
            let mut shape = vec![0i64; rank];
            check(
                api,
                (api.GetDimensions.unwrap())(info.1, shape.as_mut_ptr(), rank),
                "GetDimensions",
            )?;
            shape
        };
        let count = shape.iter().try_fold(1usize, |acc, &d| {
            usize::try_from(d).ok().and_then(|d| acc.checked_mul(d))
        });
        let count = count.ok_or_else(|| OrtError::Invalid {
            what: name.into(),
            reason: format!("output has unusable shape {shape:?}"),
        })?;
        let mut data: *mut c_void = ptr::null_mut();
        // SAFETY: live tensor value; the pointer stays valid until the value is released,
        // and we copy `count` elements of the reported type out before that.
        check(
            api,
            unsafe { (api.GetTensorMutableData.unwrap())(value, &mut data) },
            "GetTensorMutableData",
        )?;
        if data.is_null() && count > 0 {
            return Err(OrtError::Invalid {
                what: name.into(),
                reason: "output has no data".into(),
            });
        }
        let data = match element {
            // SAFETY: ONNX Runtime reported float32 with `count` elements at `data`.
            sys::ELEMENT_FLOAT if count > 0 => TensorData::F32(unsafe {
                std::slice::from_raw_parts(data as *const f32, count).to_vec()
            }),
            sys::ELEMENT_FLOAT => TensorData::F32(Vec::new()),
            // SAFETY: ONNX Runtime reported int64 with `count` elements at `data`.
            sys::ELEMENT_INT64 if count > 0 => TensorData::I64(unsafe {
                std::slice::from_raw_parts(data as *const i64, count).to_vec()
            }),
            sys::ELEMENT_INT64 => TensorData::I64(Vec::new()),
            other => {
                return Err(OrtError::Invalid {
                    what: name.into(),
                    reason: format!("output element type {other} is not float32 or int64"),
                })
            }
        };
        Ok(Tensor { shape, data })
    }
}

impl Session for DynamicSession {
    fn input_names(&self) -> &[String] {
        &self.inputs
    }

    fn output_names(&self) -> &[String] {
        &self.outputs
    }

    fn run(&self, inputs: &[(&str, Tensor)], outputs: &[&str]) -> Result<Vec<Tensor>, OrtError> {
        let api = self.loaded.api();
        // ONNX Runtime runs a graph with a missing input and fails inside a kernel; refuse first.
        if let Some(missing) = self
            .inputs
            .iter()
            .find(|name| !inputs.iter().any(|(given, _)| given == name))
        {
            return Err(OrtError::Invalid {
                what: missing.clone(),
                reason: "graph input not provided".into(),
            });
        }
        let to_cstring = |name: &str| {
            CString::new(name).map_err(|_| OrtError::Invalid {
                what: name.into(),
                reason: "tensor name contains a NUL byte".into(),
            })
        };
        let input_names: Vec<CString> = inputs
            .iter()
            .map(|(n, _)| to_cstring(n))
            .collect::<Result<_, _>>()?;
        let output_names: Vec<CString> = outputs
            .iter()
            .map(|n| to_cstring(n))
            .collect::<Result<_, _>>()?;
        // Tensor buffers are borrowed by ONNX Runtime: keep owned copies alive until Run returns.
        let mut buffers: Vec<TensorData> = inputs.iter().map(|(_, t)| t.data.clone()).collect();
        let mut values: Vec<ValueGuard> = Vec::with_capacity(inputs.len());
        for ((name, tensor), buffer) in inputs.iter().zip(buffers.iter_mut()) {
            let (ptr, bytes, element) = match buffer {
                TensorData::F32(v) => (
                    v.as_mut_ptr() as *mut c_void,
                    std::mem::size_of_val(v.as_slice()),
                    sys::ELEMENT_FLOAT,
                ),
                TensorData::I64(v) => (
                    v.as_mut_ptr() as *mut c_void,
                    std::mem::size_of_val(v.as_slice()),
                    sys::ELEMENT_INT64,
                ),
            };
            let mut value = ptr::null_mut();
            // SAFETY: `ptr` points at `bytes` bytes that outlive the value (the `buffers`
            // vector is dropped after `values`); the shape slice is valid for the call and
            // its product matches the element count (checked by `Tensor::i64/f32`).
            check(
                api,
                unsafe {
                    (api.CreateTensorWithDataAsOrtValue.unwrap())(
                        self.memory_info,
                        ptr,
                        bytes,
                        tensor.shape.as_ptr(),
                        tensor.shape.len(),
                        element,
                        &mut value,
                    )
                },
                "CreateTensorWithDataAsOrtValue",
            )
            .map_err(|e| match e {
                OrtError::Call {
                    call,
                    code,
                    message,
                } => OrtError::Call {
                    call,
                    code,
                    message: format!("input {name}: {message}"),
                },
                other => other,
            })?;
            values.push(ValueGuard(api, value));
        }
        let input_ptrs: Vec<*const c_char> = input_names.iter().map(|n| n.as_ptr()).collect();
        let output_ptrs: Vec<*const c_char> = output_names.iter().map(|n| n.as_ptr()).collect();
        let value_ptrs: Vec<*const sys::OrtValue> =
            values.iter().map(|v| v.1 as *const sys::OrtValue).collect();
        let mut raw_outputs: Vec<*mut sys::OrtValue> = vec![ptr::null_mut(); outputs.len()];
        // SAFETY: all arrays have the lengths passed; names are NUL-terminated; output slots
        // are null so ONNX Runtime allocates them (released by the guards below).
        let status = unsafe {
            (api.Run.unwrap())(
                self.session,
                ptr::null(),
                input_ptrs.as_ptr(),
                value_ptrs.as_ptr(),
                value_ptrs.len(),
                output_ptrs.as_ptr(),
                output_ptrs.len(),
                raw_outputs.as_mut_ptr(),
            )
        };
        let guards: Vec<ValueGuard> = raw_outputs.iter().map(|&v| ValueGuard(api, v)).collect();
        check(api, status, "Run")?;
        drop(values);
        drop(buffers);
        guards
            .iter()
            .zip(outputs)
            .map(|(guard, name)| self.read_output(guard.1, name))
            .collect()
    }
}

impl Drop for DynamicSession {
    fn drop(&mut self) {
        let api = self.loaded.api();
        // SAFETY: both were created in `new` and are released exactly once here.
        unsafe {
            (api.ReleaseMemoryInfo.unwrap())(self.memory_info);
            (api.ReleaseSession.unwrap())(self.session);
        }
    }
}
