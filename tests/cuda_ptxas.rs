//! CI check without a GPU: every kernel file compiles with NVRTC (through
//! `asymloss::cuda::compile`, the code path the backend uses at run time) for sm_80 and sm_90,
//! declares every entry point the backend loads, and assembles with `ptxas -v` without a
//! single spilled byte. Prints the register table (`cargo test ... -- --nocapture`).
//!
//! Needs `libnvrtc` on the library path and `ptxas` (found through `$ASL_PTXAS`, then `PATH`);
//! `.ci/cuda-env.sh <venv>` sets both up from the PyPI wheels. Without them the test prints
//! why and passes, unless `ASL_REQUIRE_NVRTC=1`, when it fails.
#![cfg(feature = "cuda")]

use std::path::PathBuf;
use std::process::Command;

use asymloss::cuda::compile::{self, CompileOptions, KernelFile};

const ARCHS: [u32; 2] = [80, 90];

fn required() -> bool {
    std::env::var("ASL_REQUIRE_NVRTC").as_deref() == Ok("1")
}

/// Prints why the check cannot run, or fails when it is required.
fn unavailable(why: &str) {
    if required() {
        panic!("ASL_REQUIRE_NVRTC=1 but {why}");
    }
    println!("SKIPPED (set ASL_REQUIRE_NVRTC=1 to make this an error): {why}");
}

fn find_ptxas() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("ASL_PTXAS") {
        return Some(PathBuf::from(p));
    }
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|d| d.join("ptxas"))
        .find(|p| p.is_file())
}

/// One line of the ptxas report.
#[derive(Debug, Default, Clone)]
struct Usage {
    entry: String,
    arch: String,
    registers: u32,
    stack: u32,
    spill_stores: u32,
    spill_loads: u32,
    smem: u32,
}

fn number_before(line: &str, unit: &str) -> Option<u32> {
    let i = line.find(unit)?;
    line[..i]
        .split(|c: char| !c.is_ascii_digit())
        .rfind(|s| !s.is_empty())?
        .parse()
        .ok()
}

/// Parses `ptxas -v` output: `Compiling entry function 'X' for 'sm_90'`, then
/// `N bytes stack frame, S bytes spill stores, L bytes spill loads`, then `Used R registers`.
fn parse_ptxas(report: &str) -> Vec<Usage> {
    let mut out = Vec::new();
    let mut cur: Option<Usage> = None;
    for line in report.lines() {
        if let Some(rest) = line.split("Compiling entry function '").nth(1) {
            if let Some(u) = cur.take() {
                out.push(u);
            }
            let mut parts = rest.split('\'');
            let entry = parts.next().unwrap_or_default().to_string();
            let arch = parts.nth(1).unwrap_or_default().to_string();
            cur = Some(Usage {
                entry,
                arch,
                ..Default::default()
            });
        } else if let Some(u) = cur.as_mut() {
            if line.contains("bytes stack frame") {
                u.stack = number_before(line, " bytes stack frame").unwrap_or(0);
                u.spill_stores = number_before(line, " bytes spill stores").unwrap_or(0);
                u.spill_loads = number_before(line, " bytes spill loads").unwrap_or(0);
            }
            if line.contains("Used") && line.contains("registers") {
                u.registers = number_before(line, " registers").unwrap_or(0);
                u.smem = number_before(line, " bytes smem").unwrap_or(0);
            }
        }
    }
    out.extend(cur);
    out
}

#[test]
fn ptxas_parser_reads_the_report_format() {
    let report = "ptxas info    : Compiling entry function 'k_a' for 'sm_90'\n\
        ptxas info    : Function properties for k_a\n\
        \x20   16 bytes stack frame, 12 bytes spill stores, 8 bytes spill loads\n\
        ptxas info    : Used 40 registers, used 1 barriers, 544 bytes smem\n\
        ptxas info    : Compiling entry function 'k_b' for 'sm_90'\n\
        ptxas info    : Function properties for k_b\n\
        \x20   0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads\n\
        ptxas info    : Used 64 registers, used 0 barriers\n";
    let u = parse_ptxas(report);
    assert_eq!(u.len(), 2);
    assert_eq!((u[0].entry.as_str(), u[0].arch.as_str()), ("k_a", "sm_90"));
    assert_eq!(
        (
            u[0].registers,
            u[0].stack,
            u[0].spill_stores,
            u[0].spill_loads
        ),
        (40, 16, 12, 8)
    );
    assert_eq!(u[0].smem, 544);
    assert_eq!((u[1].registers, u[1].spill_stores, u[1].smem), (64, 0, 0));
}

#[test]
fn sources_inline_their_headers_once() {
    for f in KernelFile::ALL {
        let src = f.source();
        assert!(
            !src.contains("#include \""),
            "{}: an include was left",
            f.file_name()
        );
        assert_eq!(src.matches("#define ASL_MATH_CUH").count(), 1);
        assert_eq!(src.matches("#define ASL_DEVICE_CUH").count(), 1);
        assert!(src.contains(&format!("#line 1 \"{}\"", f.file_name())));
    }
}

#[test]
fn every_kernel_compiles_for_sm80_and_sm90_without_spills() {
    if let Err(e) = compile::nvrtc_available() {
        unavailable(&e.to_string());
        return;
    }
    let version = compile::nvrtc_version().expect("nvrtcVersion");
    let Some(ptxas) = find_ptxas() else {
        unavailable("ptxas was not found (set ASL_PTXAS or put it on PATH)");
        return;
    };
    let ptxas_version = Command::new(&ptxas).arg("--version").output();
    let Ok(ptxas_version) = ptxas_version else {
        unavailable(&format!("{} cannot be run", ptxas.display()));
        return;
    };
    let ptxas_version = String::from_utf8_lossy(&ptxas_version.stdout);
    println!(
        "NVRTC {}.{}; {} ({})",
        version.0,
        version.1,
        ptxas.display(),
        ptxas_version.lines().last().unwrap_or("").trim()
    );

    let dir = tempfile::tempdir().unwrap();
    let mut table = Vec::new();
    for file in KernelFile::ALL {
        for arch in ARCHS {
            let c = compile::compile(file, arch, &CompileOptions::default())
                .unwrap_or_else(|e| panic!("{} for sm_{arch}: {e}", file.file_name()));
            assert!(
                c.log.is_empty(),
                "NVRTC warnings for {}:\n{}",
                file.file_name(),
                c.log
            );
            assert!(c.cubin.is_some(), "NVRTC gave no SASS for sm_{arch}");
            let entries = compile::ptx_entries(&c.ptx);
            for want in file.entry_points() {
                assert!(
                    entries.contains(&want),
                    "{} lacks entry {want}",
                    file.file_name()
                );
            }
            let ptx_path = dir
                .path()
                .join(format!("{}.sm_{arch}.ptx", file.file_name()));
            std::fs::write(&ptx_path, &c.ptx).unwrap();
            let out = Command::new(&ptxas)
                .arg(format!("-arch=sm_{arch}"))
                .arg("-v")
                .arg(&ptx_path)
                .arg("-o")
                .arg(dir.path().join("out.cubin"))
                .output()
                .expect("running ptxas");
            let report = String::from_utf8_lossy(&out.stderr);
            assert!(
                out.status.success(),
                "ptxas failed on {}:\n{report}",
                ptx_path.display()
            );
            let usage = parse_ptxas(&report);
            assert_eq!(usage.len(), entries.len(), "ptxas report:\n{report}");
            table.extend(usage);
        }
    }

    table.sort_by(|a, b| (&a.entry, &a.arch).cmp(&(&b.entry, &b.arch)));
    println!(
        "{:<32} {:>6} {:>5} {:>6} {:>13} {:>5}",
        "kernel", "arch", "regs", "stack", "spill st/ld", "smem"
    );
    for u in &table {
        println!(
            "{:<32} {:>6} {:>5} {:>6} {:>13} {:>5}",
            u.entry,
            u.arch,
            u.registers,
            u.stack,
            format!("{}/{}", u.spill_stores, u.spill_loads),
            u.smem
        );
    }
    let spills: Vec<String> = table
        .iter()
        .filter(|u| u.spill_stores > 0 || u.spill_loads > 0)
        .map(|u| {
            format!(
                "{} {}: {}/{} bytes",
                u.entry, u.arch, u.spill_stores, u.spill_loads
            )
        })
        .collect();
    assert!(
        spills.is_empty(),
        "ptxas spills registers:\n{}",
        spills.join("\n")
    );
    // The launch bounds promise at most 64 registers (4 x 256 or 2 x 512 threads per SM).
    let over: Vec<String> = table
        .iter()
        .filter(|u| u.registers > 64)
        .map(|u| format!("{} {}: {}", u.entry, u.arch, u.registers))
        .collect();
    assert!(
        over.is_empty(),
        "more than 64 registers:\n{}",
        over.join("\n")
    );
}

/// The backend compiles one unit (file x logits dtype x target type) at a time: every unit
/// must compile for sm_90, declare exactly its entry points, and the units must cover the file.
#[test]
fn every_unit_compiles_and_declares_its_entries() {
    use asymloss::cuda::Unit;
    use asymloss::DType;
    if let Err(e) = compile::nvrtc_available() {
        unavailable(&e.to_string());
        return;
    }
    let mut units = Vec::new();
    for dtype in [DType::F32, DType::F16, DType::Bf16] {
        for u8_targets in [false, true] {
            units.push(Unit {
                file: KernelFile::MultiLabel,
                dtype,
                u8_targets,
            });
        }
        units.push(Unit {
            file: KernelFile::SingleLabel,
            dtype,
            u8_targets: false,
        });
    }
    for file in KernelFile::ALL {
        let mut covered: Vec<String> = units
            .iter()
            .filter(|u| u.file == file)
            .flat_map(|u| u.entry_points())
            .collect();
        covered.sort();
        covered.dedup();
        let mut all = file.entry_points();
        all.sort();
        assert_eq!(
            covered,
            all,
            "{}: units do not cover the file",
            file.file_name()
        );
    }
    let results: Vec<(Unit, Vec<String>)> = std::thread::scope(|s| {
        let handles: Vec<_> = units
            .iter()
            .map(|&u| {
                s.spawn(move || {
                    let opts = CompileOptions {
                        line_info: false,
                        extra: u.defines(),
                    };
                    let c = compile::compile(u.file, 90, &opts)
                        .unwrap_or_else(|e| panic!("{u:?}: {e}"));
                    (u, compile::ptx_entries(&c.ptx))
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (u, mut entries) in results {
        let mut want = u.entry_points();
        entries.sort();
        want.sort();
        assert_eq!(entries, want, "{u:?}");
    }
}
