//! The slice of the ONNX Runtime C API (`onnxruntime_c_api.h`) this crate calls.
//!
//! The C header is not vendored. `OrtApi` is a table of function pointers that ONNX Runtime
//! only ever appends to, so the entries used here are declared at their index in the header's
//! order (stable since API level 1) and every entry we do not call is a reserved
//! pointer-sized slot. Each entry is an `Option` so that a library handing out a table with a
//! null entry is detected at load time instead of being called (see `check_table`).
//!
//! Index of each used entry in the header (0-based), for review against
//! `include/onnxruntime/core/session/onnxruntime_c_api.h`:
//! 0 CreateStatus, 1 GetErrorCode, 2 GetErrorMessage, 3 CreateEnv, 7 CreateSession, 9 Run,
//! 10 CreateSessionOptions, 23 SetSessionGraphOptimizationLevel, 24 SetIntraOpNumThreads,
//! 25 SetInterOpNumThreads, 30 SessionGetInputCount, 31 SessionGetOutputCount,
//! 36 SessionGetInputName, 37 SessionGetOutputName, 49 CreateTensorWithDataAsOrtValue,
//! 51 GetTensorMutableData, 60 GetTensorElementType, 61 GetDimensionsCount, 62 GetDimensions,
//! 65 GetTensorTypeAndShape, 69 CreateCpuMemoryInfo, 76 AllocatorFree,
//! 78 GetAllocatorWithDefaultOptions, 92 ReleaseEnv, 93 ReleaseStatus, 94 ReleaseMemoryInfo,
//! 95 ReleaseSession, 96 ReleaseValue, 99 ReleaseTensorTypeAndShapeInfo,
//! 100 ReleaseSessionOptions.
#![allow(non_snake_case, non_camel_case_types)]

use std::os::raw::{c_char, c_int, c_void};

macro_rules! opaque {
    ($($name:ident),* $(,)?) => {
        $(
            /// Opaque ONNX Runtime object; only ever handled by pointer.
            #[repr(C)]
            pub struct $name {
                _private: [u8; 0],
            }
        )*
    };
}

opaque!(
    OrtStatus,
    OrtEnv,
    OrtSession,
    OrtSessionOptions,
    OrtValue,
    OrtMemoryInfo,
    OrtTensorTypeAndShapeInfo,
    OrtRunOptions,
    OrtAllocator,
);

/// `OrtStatus*`: null means success.
pub type OrtStatusPtr = *mut OrtStatus;

/// `ORT_LOGGING_LEVEL_WARNING` in `OrtLoggingLevel`.
pub const ORT_LOGGING_LEVEL_WARNING: c_int = 2;
/// `ORT_ENABLE_ALL` in `GraphOptimizationLevel` (also what the Python API uses by default).
pub const ORT_ENABLE_ALL: c_int = 99;
/// `OrtArenaAllocator` in `OrtAllocatorType`.
pub const ORT_ARENA_ALLOCATOR: c_int = 1;
/// `OrtMemTypeDefault` in `OrtMemType`.
pub const ORT_MEM_TYPE_DEFAULT: c_int = 0;
/// `ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT`.
pub const ELEMENT_FLOAT: c_int = 1;
/// `ONNX_TENSOR_ELEMENT_DATA_TYPE_INT64`.
pub const ELEMENT_INT64: c_int = 7;

/// `struct OrtApiBase`: the only symbol the library exports is `OrtGetApiBase`, returning this.
#[repr(C)]
pub struct OrtApiBase {
    /// `const OrtApi* GetApi(uint32_t version)`: null when `version` is newer than the library.
    pub GetApi: Option<unsafe extern "C" fn(version: u32) -> *const OrtApi>,
    /// `const char* GetVersionString(void)`: e.g. `"1.32.0"`, static storage.
    pub GetVersionString: Option<unsafe extern "C" fn() -> *const c_char>,
}

/// `OrtGetApiBase`, the library's single exported entry point.
pub type OrtGetApiBaseFn = unsafe extern "C" fn() -> *const OrtApiBase;

type Reserved = *const c_void;

/// `struct OrtApi`, in header order; `_rN_M` are the entries N..=M we never call.
#[repr(C)]
pub struct OrtApi {
    // 0
    pub CreateStatus:
        Option<unsafe extern "C" fn(code: c_int, msg: *const c_char) -> *mut OrtStatus>,
    // 1
    pub GetErrorCode: Option<unsafe extern "C" fn(status: *const OrtStatus) -> c_int>,
    // 2
    pub GetErrorMessage: Option<unsafe extern "C" fn(status: *const OrtStatus) -> *const c_char>,
    // 3
    pub CreateEnv: Option<
        unsafe extern "C" fn(
            level: c_int,
            logid: *const c_char,
            out: *mut *mut OrtEnv,
        ) -> OrtStatusPtr,
    >,
    _r4_6: [Reserved; 3],
    // 7
    pub CreateSession: Option<
        unsafe extern "C" fn(
            env: *const OrtEnv,
            model_path: *const c_char,
            options: *const OrtSessionOptions,
            out: *mut *mut OrtSession,
        ) -> OrtStatusPtr,
    >,
    _r8_8: [Reserved; 1],
    // 9
    pub Run: Option<
        unsafe extern "C" fn(
            session: *mut OrtSession,
            run_options: *const OrtRunOptions,
            input_names: *const *const c_char,
            inputs: *const *const OrtValue,
            input_len: usize,
            output_names: *const *const c_char,
            output_names_len: usize,
            outputs: *mut *mut OrtValue,
        ) -> OrtStatusPtr,
    >,
    // 10
    pub CreateSessionOptions:
        Option<unsafe extern "C" fn(options: *mut *mut OrtSessionOptions) -> OrtStatusPtr>,
    _r11_22: [Reserved; 12],
    // 23
    pub SetSessionGraphOptimizationLevel:
        Option<unsafe extern "C" fn(options: *mut OrtSessionOptions, level: c_int) -> OrtStatusPtr>,
    // 24
    pub SetIntraOpNumThreads:
        Option<unsafe extern "C" fn(options: *mut OrtSessionOptions, n: c_int) -> OrtStatusPtr>,
    // 25
    pub SetInterOpNumThreads:
        Option<unsafe extern "C" fn(options: *mut OrtSessionOptions, n: c_int) -> OrtStatusPtr>,
    _r26_29: [Reserved; 4],
    // 30
    pub SessionGetInputCount:
        Option<unsafe extern "C" fn(session: *const OrtSession, out: *mut usize) -> OrtStatusPtr>,
    // 31
    pub SessionGetOutputCount:
        Option<unsafe extern "C" fn(session: *const OrtSession, out: *mut usize) -> OrtStatusPtr>,
    _r32_35: [Reserved; 4],
    // 36
    pub SessionGetInputName: Option<
        unsafe extern "C" fn(
            session: *const OrtSession,
            index: usize,
            allocator: *mut OrtAllocator,
            value: *mut *mut c_char,
        ) -> OrtStatusPtr,
    >,
    // 37
    pub SessionGetOutputName: Option<
        unsafe extern "C" fn(
            session: *const OrtSession,
            index: usize,
            allocator: *mut OrtAllocator,
            value: *mut *mut c_char,
        ) -> OrtStatusPtr,
    >,
    _r38_48: [Reserved; 11],
    // 49
    pub CreateTensorWithDataAsOrtValue: Option<
        unsafe extern "C" fn(
            info: *const OrtMemoryInfo,
            p_data: *mut c_void,
            p_data_len: usize,
            shape: *const i64,
            shape_len: usize,
            element_type: c_int,
            out: *mut *mut OrtValue,
        ) -> OrtStatusPtr,
    >,
    _r50_50: [Reserved; 1],
    // 51
    pub GetTensorMutableData:
        Option<unsafe extern "C" fn(value: *mut OrtValue, out: *mut *mut c_void) -> OrtStatusPtr>,
    _r52_59: [Reserved; 8],
    // 60
    pub GetTensorElementType: Option<
        unsafe extern "C" fn(
            info: *const OrtTensorTypeAndShapeInfo,
            out: *mut c_int,
        ) -> OrtStatusPtr,
    >,
    // 61
    pub GetDimensionsCount: Option<
        unsafe extern "C" fn(
            info: *const OrtTensorTypeAndShapeInfo,
            out: *mut usize,
        ) -> OrtStatusPtr,
    >,
    // 62
    pub GetDimensions: Option<
        unsafe extern "C" fn(
            info: *const OrtTensorTypeAndShapeInfo,
            dim_values: *mut i64,
            dim_values_length: usize,
        ) -> OrtStatusPtr,
    >,
    _r63_64: [Reserved; 2],
    // 65
    pub GetTensorTypeAndShape: Option<
        unsafe extern "C" fn(
            value: *const OrtValue,
            out: *mut *mut OrtTensorTypeAndShapeInfo,
        ) -> OrtStatusPtr,
    >,
    _r66_68: [Reserved; 3],
    // 69
    pub CreateCpuMemoryInfo: Option<
        unsafe extern "C" fn(
            allocator_type: c_int,
            mem_type: c_int,
            out: *mut *mut OrtMemoryInfo,
        ) -> OrtStatusPtr,
    >,
    _r70_75: [Reserved; 6],
    // 76
    pub AllocatorFree:
        Option<unsafe extern "C" fn(allocator: *mut OrtAllocator, p: *mut c_void) -> OrtStatusPtr>,
    _r77_77: [Reserved; 1],
    // 78
    pub GetAllocatorWithDefaultOptions:
        Option<unsafe extern "C" fn(out: *mut *mut OrtAllocator) -> OrtStatusPtr>,
    _r79_91: [Reserved; 13],
    // 92
    pub ReleaseEnv: Option<unsafe extern "C" fn(input: *mut OrtEnv)>,
    // 93
    pub ReleaseStatus: Option<unsafe extern "C" fn(input: *mut OrtStatus)>,
    // 94
    pub ReleaseMemoryInfo: Option<unsafe extern "C" fn(input: *mut OrtMemoryInfo)>,
    // 95
    pub ReleaseSession: Option<unsafe extern "C" fn(input: *mut OrtSession)>,
    // 96
    pub ReleaseValue: Option<unsafe extern "C" fn(input: *mut OrtValue)>,
    _r97_98: [Reserved; 2],
    // 99
    pub ReleaseTensorTypeAndShapeInfo:
        Option<unsafe extern "C" fn(input: *mut OrtTensorTypeAndShapeInfo)>,
    // 100
    pub ReleaseSessionOptions: Option<unsafe extern "C" fn(input: *mut OrtSessionOptions)>,
}

/// Index each entry must sit at (compile-time checked below against the struct layout).
const PTR: usize = std::mem::size_of::<*const c_void>();
const _: () = {
    // If a reserved-slot count above is wrong, these offsets move and the build fails.
    assert!(std::mem::offset_of!(OrtApi, CreateEnv) == 3 * PTR);
    assert!(std::mem::offset_of!(OrtApi, CreateSession) == 7 * PTR);
    assert!(std::mem::offset_of!(OrtApi, Run) == 9 * PTR);
    assert!(std::mem::offset_of!(OrtApi, SetSessionGraphOptimizationLevel) == 23 * PTR);
    assert!(std::mem::offset_of!(OrtApi, SessionGetInputCount) == 30 * PTR);
    assert!(std::mem::offset_of!(OrtApi, SessionGetInputName) == 36 * PTR);
    assert!(std::mem::offset_of!(OrtApi, CreateTensorWithDataAsOrtValue) == 49 * PTR);
    assert!(std::mem::offset_of!(OrtApi, GetTensorMutableData) == 51 * PTR);
    assert!(std::mem::offset_of!(OrtApi, GetTensorElementType) == 60 * PTR);
    assert!(std::mem::offset_of!(OrtApi, GetTensorTypeAndShape) == 65 * PTR);
    assert!(std::mem::offset_of!(OrtApi, CreateCpuMemoryInfo) == 69 * PTR);
    assert!(std::mem::offset_of!(OrtApi, AllocatorFree) == 76 * PTR);
    assert!(std::mem::offset_of!(OrtApi, GetAllocatorWithDefaultOptions) == 78 * PTR);
    assert!(std::mem::offset_of!(OrtApi, ReleaseEnv) == 92 * PTR);
    assert!(std::mem::offset_of!(OrtApi, ReleaseTensorTypeAndShapeInfo) == 99 * PTR);
    assert!(std::mem::offset_of!(OrtApi, ReleaseSessionOptions) == 100 * PTR);
    assert!(std::mem::size_of::<OrtApi>() == 101 * PTR);
};

/// Names of the used entries that are null in `api`, if any.
pub fn missing_entries(api: &OrtApi) -> Vec<&'static str> {
    let mut missing = Vec::new();
    macro_rules! need {
        ($($field:ident),* $(,)?) => {
            $( if api.$field.is_none() { missing.push(stringify!($field)); } )*
        };
    }
    need!(
        CreateStatus,
        GetErrorCode,
        GetErrorMessage,
        CreateEnv,
        CreateSession,
        Run,
        CreateSessionOptions,
        SetSessionGraphOptimizationLevel,
        SetIntraOpNumThreads,
        SetInterOpNumThreads,
        SessionGetInputCount,
        SessionGetOutputCount,
        SessionGetInputName,
        SessionGetOutputName,
        CreateTensorWithDataAsOrtValue,
        GetTensorMutableData,
        GetTensorElementType,
        GetDimensionsCount,
        GetDimensions,
        GetTensorTypeAndShape,
        CreateCpuMemoryInfo,
        AllocatorFree,
        GetAllocatorWithDefaultOptions,
        ReleaseEnv,
        ReleaseStatus,
        ReleaseMemoryInfo,
        ReleaseSession,
        ReleaseValue,
        ReleaseTensorTypeAndShapeInfo,
        ReleaseSessionOptions,
    );
    missing
}
