//! The kernel sources and their compilation by NVRTC (through cudarc's NVRTC bindings).
//!
//! The `.cu` files in `kernels/` are embedded with `include_str!`; their `#include "..."` lines
//! are replaced by the embedded headers, so NVRTC needs no include path (the kernels use no
//! CUDA headers at all: f16 and bf16 conversions are written out in `asl_device.cuh`).
//!
//! [`compile`] is the one code path for the backend (which compiles for the device's compute
//! capability at first use) and for the CI check that assembles the PTX with `ptxas -v` for
//! sm_80 and sm_90 without a GPU.

use std::ffi::CString;

use cudarc::nvrtc::{result as nvrtc, sys as nvrtc_sys};

use crate::error::{Error, Result};
use crate::tensor::DType;

/// `kernels/asl_math.cuh`: per-element math, also compiled by the host C++ test.
pub const ASL_MATH_CUH: &str = include_str!("../../kernels/asl_math.cuh");
/// `kernels/asl_device.cuh`: device helpers (dtype adapters, reductions, workspace).
pub const ASL_DEVICE_CUH: &str = include_str!("../../kernels/asl_device.cuh");
/// `kernels/multi_label.cu`.
pub const MULTI_LABEL_CU: &str = include_str!("../../kernels/multi_label.cu");
/// `kernels/single_label.cu`.
pub const SINGLE_LABEL_CU: &str = include_str!("../../kernels/single_label.cu");

/// One kernel source file (one NVRTC program, one CUDA module).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KernelFile {
    /// `kernels/multi_label.cu`.
    MultiLabel,
    /// `kernels/single_label.cu`.
    SingleLabel,
}

impl KernelFile {
    /// Every kernel file.
    pub const ALL: [KernelFile; 2] = [KernelFile::MultiLabel, KernelFile::SingleLabel];

    /// The file name under `kernels/`.
    pub fn file_name(self) -> &'static str {
        match self {
            KernelFile::MultiLabel => "multi_label.cu",
            KernelFile::SingleLabel => "single_label.cu",
        }
    }

    fn raw_source(self) -> &'static str {
        match self {
            KernelFile::MultiLabel => MULTI_LABEL_CU,
            KernelFile::SingleLabel => SINGLE_LABEL_CU,
        }
    }

    /// The self-contained source handed to NVRTC: the file with its local includes inlined
    /// (each header once, with `#line` directives so that NVRTC's messages name the real file
    /// and line).
    pub fn source(self) -> String {
        let mut out = String::new();
        let mut seen = Vec::new();
        inline_includes(self.file_name(), self.raw_source(), &mut out, &mut seen);
        out
    }

    /// The `extern "C"` entry points the file defines (what the backend loads).
    pub fn entry_points(self) -> Vec<String> {
        let mut names = Vec::new();
        match self {
            KernelFile::MultiLabel => {
                for pass in ["forward", "backward", "fused"] {
                    for dtype in ["f32", "f16", "bf16"] {
                        names.push(format!("multi_label_{pass}_{dtype}"));
                        names.push(format!("multi_label_{pass}_{dtype}_u8"));
                    }
                }
                names.push("multi_label_count_f32".into());
                names.push("multi_label_count_u8".into());
            }
            KernelFile::SingleLabel => {
                for pass in ["forward", "backward", "fused"] {
                    for dtype in ["f32", "f16", "bf16"] {
                        names.push(format!("single_label_{pass}_{dtype}"));
                    }
                }
                names.push("single_label_count".into());
            }
        }
        names
    }
}

/// One NVRTC run of the backend: a kernel file restricted to one logits dtype (and, for the
/// multi-label file, one target type) with `-DASL_UNIT...`, so that the first call of a kind
/// compiles three kernels rather than the whole file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Unit {
    /// The file.
    pub file: KernelFile,
    /// The logits dtype.
    pub dtype: DType,
    /// Multi-label only: u8 targets (else f32).
    pub u8_targets: bool,
}

impl Unit {
    /// The NVRTC options that select the unit.
    pub fn defines(&self) -> Vec<String> {
        let d = match self.dtype {
            DType::F32 => "F32",
            DType::F16 => "F16",
            DType::Bf16 => "BF16",
        };
        let mut v = vec!["-DASL_UNIT".to_string(), format!("-DASL_UNIT_{d}")];
        if self.file == KernelFile::MultiLabel {
            v.push(
                if self.u8_targets {
                    "-DASL_UNIT_TU8"
                } else {
                    "-DASL_UNIT_TF32"
                }
                .into(),
            );
        }
        v
    }

    /// The entry points the unit defines.
    pub fn entry_points(&self) -> Vec<String> {
        let dt = self.dtype.name();
        match self.file {
            KernelFile::MultiLabel => {
                let t = if self.u8_targets { "_u8" } else { "" };
                let mut v: Vec<String> = ["forward", "backward", "fused"]
                    .iter()
                    .map(|p| format!("multi_label_{p}_{dt}{t}"))
                    .collect();
                v.push(
                    if self.u8_targets {
                        "multi_label_count_u8"
                    } else {
                        "multi_label_count_f32"
                    }
                    .into(),
                );
                v
            }
            KernelFile::SingleLabel => {
                let mut v: Vec<String> = ["forward", "backward", "fused"]
                    .iter()
                    .map(|p| format!("single_label_{p}_{dt}"))
                    .collect();
                v.push("single_label_count".into());
                v
            }
        }
    }
}

fn header(name: &str) -> Option<&'static str> {
    match name {
        "asl_math.cuh" => Some(ASL_MATH_CUH),
        "asl_device.cuh" => Some(ASL_DEVICE_CUH),
        _ => None,
    }
}

fn inline_includes(name: &str, text: &str, out: &mut String, seen: &mut Vec<String>) {
    out.push_str(&format!("#line 1 \"{name}\"\n"));
    for (i, line) in text.lines().enumerate() {
        let included = line
            .trim()
            .strip_prefix("#include \"")
            .and_then(|rest| rest.strip_suffix('"'))
            .and_then(|h| header(h).map(|body| (h, body)));
        match included {
            Some((h, body)) => {
                if !seen.iter().any(|s| s == h) {
                    seen.push(h.to_string());
                    inline_includes(h, body, out, seen);
                    out.push_str(&format!("#line {} \"{name}\"\n", i + 2));
                } else {
                    out.push('\n');
                }
            }
            None => {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
}

/// Compiler switches beyond the architecture.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct CompileOptions {
    /// Emit line information into the PTX (for profilers; no effect on the code).
    pub line_info: bool,
    /// Extra NVRTC options, passed as they are (for experiments: `-D...`, `--maxrregcount=N`).
    pub extra: Vec<String>,
}

/// What NVRTC produced for one file and architecture.
#[derive(Clone, Debug)]
pub struct Compiled {
    /// The file.
    pub file: KernelFile,
    /// The compute capability, `major * 10 + minor` (80 for sm_80).
    pub arch: u32,
    /// The PTX text.
    pub ptx: String,
    /// The SASS binary for the real architecture, when NVRTC provides one. The backend loads it
    /// in preference to the PTX, so that a driver older than NVRTC can still run the kernels.
    pub cubin: Option<Vec<u8>>,
    /// NVRTC's log (warnings); empty when there were none.
    pub log: String,
}

/// Whether NVRTC (`libnvrtc`) can be loaded. Call this before anything else in this module:
/// with dynamic loading, a missing library would otherwise panic inside cudarc.
pub fn nvrtc_available() -> Result<()> {
    // SAFETY: `is_culib_present` only tries to open the library with libloading; it does not
    // call into it.
    if unsafe { nvrtc_sys::is_culib_present() } {
        Ok(())
    } else {
        Err(Error::CudaUnavailable(
            "libnvrtc was not found (install the CUDA toolkit or `pip install \
             nvidia-cuda-nvrtc-cu12`, and put its lib directory on LD_LIBRARY_PATH)"
                .into(),
        ))
    }
}

/// NVRTC's version `(major, minor)`.
pub fn nvrtc_version() -> Result<(i32, i32)> {
    nvrtc_available()?;
    let (mut major, mut minor) = (0, 0);
    // SAFETY: the library is present (checked above) and both out-pointers are valid.
    unsafe { nvrtc_sys::nvrtcVersion(&mut major, &mut minor) }
        .result()
        .map_err(|e| Error::CudaUnavailable(format!("nvrtcVersion failed: {e:?}")))?;
    Ok((major, minor))
}

/// Owns an NVRTC program and destroys it on drop.
struct Program(nvrtc_sys::nvrtcProgram);

impl Drop for Program {
    fn drop(&mut self) {
        // SAFETY: the program was created by `create_program` and is destroyed only here.
        // A failure to destroy leaks the program; there is nothing better to do in a drop.
        let _ = unsafe { nvrtc::destroy_program(self.0) };
    }
}

fn c_chars_to_string(v: &[std::ffi::c_char]) -> String {
    // NVRTC strings are NUL-terminated; take what comes before the first NUL.
    let bytes: Vec<u8> = v
        .iter()
        .take_while(|&&c| c != 0)
        .map(|&c| c as u8)
        .collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// Compiles `file` for compute capability `arch` (e.g. 80 for sm_80, 90 for sm_90).
///
/// # Errors
/// [`Error::CudaUnavailable`] without NVRTC, [`Error::Nvrtc`] (with NVRTC's log) when the
/// compiler rejects the source or the architecture.
pub fn compile(file: KernelFile, arch: u32, opts: &CompileOptions) -> Result<Compiled> {
    nvrtc_available()?;
    let src = CString::new(file.source()).map_err(|_| Error::Nvrtc {
        kernel: file.file_name(),
        log: "the source contains a NUL byte".into(),
    })?;
    let name = CString::new(file.file_name()).expect("file names have no NUL");
    let fail = |what: &str, e: nvrtc::NvrtcError| Error::Nvrtc {
        kernel: file.file_name(),
        log: format!("{what}: {e:?}"),
    };
    let prog = Program(
        nvrtc::create_program(src.as_c_str(), Some(name.as_c_str()))
            .map_err(|e| fail("nvrtcCreateProgram", e))?,
    );
    let mut options = vec![
        format!("--gpu-architecture=sm_{arch}"),
        "--std=c++17".to_string(),
    ];
    if opts.line_info {
        options.push("--generate-line-info".into());
    }
    options.extend(opts.extra.iter().cloned());
    log::trace!(
        "nvrtc: compiling {} for sm_{arch} with {options:?}",
        file.file_name()
    );

    // SAFETY: `prog` is a live program from `create_program`; the options are plain strings.
    let compiled = unsafe { nvrtc::compile_program(prog.0, &options) };
    // SAFETY: same program; the log exists whether or not compilation succeeded.
    let log = unsafe { nvrtc::get_program_log(prog.0) }
        .map(|v| c_chars_to_string(&v))
        .unwrap_or_default();
    if let Err(e) = compiled {
        return Err(Error::Nvrtc {
            kernel: file.file_name(),
            log: format!("{e:?} with options {options:?}:\n{log}"),
        });
    }
    // SAFETY: the program compiled successfully, so its PTX is available.
    let ptx = unsafe { nvrtc::get_ptx(prog.0) }.map_err(|e| fail("nvrtcGetPTX", e))?;
    let ptx = c_chars_to_string(&ptx);

    let mut size = 0usize;
    // SAFETY: valid program and out-pointer; a virtual architecture reports size 0.
    let cubin = match unsafe { nvrtc_sys::nvrtcGetCUBINSize(prog.0, &mut size) }.result() {
        Ok(()) if size > 0 => {
            let mut buf = vec![0u8; size];
            // SAFETY: `buf` has the size NVRTC reported.
            unsafe { nvrtc_sys::nvrtcGetCUBIN(prog.0, buf.as_mut_ptr().cast()) }
                .result()
                .ok()
                .map(|_| buf)
        }
        _ => None,
    };
    Ok(Compiled {
        file,
        arch,
        ptx,
        cubin,
        log: log.trim().to_string(),
    })
}

/// The `.entry` names declared in a PTX text.
pub fn ptx_entries(ptx: &str) -> Vec<String> {
    ptx.lines()
        .filter_map(|l| {
            let l = l.trim_start();
            let rest = l
                .strip_prefix(".visible .entry ")
                .or_else(|| l.strip_prefix(".entry "))?;
            let name: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            (!name.is_empty()).then_some(name)
        })
        .collect()
}
