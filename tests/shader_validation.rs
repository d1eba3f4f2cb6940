//! Every WGSL module the wgpu backend can create, parsed and validated by naga under exactly the
//! capabilities it asks the device for: f16 modules with `SHADER_FLOAT16` (and rejected
//! without it), subgroup modules with `SUBGROUP` (and rejected without it), the rest with
//! neither. Needs no adapter.
#![cfg(feature = "wgpu")]

use asymloss::wgpu::shaders::{all_variants, ModuleKey};
use naga::valid::{Capabilities, ShaderStages, SubgroupOperationSet, ValidationFlags, Validator};

fn caps(f16: bool, subgroups: bool) -> Capabilities {
    let mut c = Capabilities::empty();
    if f16 {
        c |= Capabilities::SHADER_FLOAT16;
    }
    if subgroups {
        c |= Capabilities::SUBGROUP;
    }
    c
}

fn validate(key: &ModuleKey, caps: Capabilities) -> Result<naga::Module, String> {
    let src = key.source();
    let module = naga::front::wgsl::parse_str(&src).map_err(|e| e.emit_to_string(&src))?;
    let mut v = Validator::new(ValidationFlags::all(), caps);
    if caps.contains(Capabilities::SUBGROUP) {
        v.subgroup_stages(ShaderStages::COMPUTE);
        v.subgroup_operations(SubgroupOperationSet::BASIC | SubgroupOperationSet::ARITHMETIC);
    }
    v.validate(&module).map_err(|e| e.emit_to_string(&src))?;
    Ok(module)
}

#[test]
fn every_module_validates_with_the_capabilities_it_requests() {
    let variants = all_variants();
    assert_eq!(
        variants.len(),
        18,
        "3 dtypes x (2 multi-label target types + 1) x 2"
    );
    for key in &variants {
        let module = validate(key, caps(key.needs_f16(), key.subgroups))
            .unwrap_or_else(|e| panic!("{}: {e}", key.label()));
        let names: Vec<&str> = module
            .entry_points
            .iter()
            .map(|e| e.name.as_str())
            .collect();
        for ep in key.entry_points() {
            assert!(names.contains(ep), "{}: no entry point {ep}", key.label());
        }
    }
}

#[test]
fn modules_need_exactly_the_capabilities_they_declare() {
    for key in all_variants() {
        // With everything granted they still validate.
        validate(&key, caps(true, true)).unwrap_or_else(|e| panic!("{}: {e}", key.label()));
        // Without f16, exactly the f16 modules fail; without subgroups, the subgroup ones.
        let no_f16 = validate(&key, caps(false, key.subgroups));
        assert_eq!(
            no_f16.is_err(),
            key.needs_f16(),
            "{} without f16",
            key.label()
        );
        let no_sg = validate(&key, caps(key.needs_f16(), false));
        assert_eq!(
            no_sg.is_err(),
            key.subgroups,
            "{} without subgroups",
            key.label()
        );
    }
}

#[test]
fn every_kernel_file_has_a_header_comment() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("shaders");
    let mut n = 0;
    for e in std::fs::read_dir(&dir).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "wgsl") {
            let text = std::fs::read_to_string(&p).unwrap();
            let head: Vec<&str> = text.lines().take(3).collect();
            assert!(
                head.iter().all(|l| l.starts_with("//")),
                "{} must open with a header comment",
                p.display()
            );
            assert!(
                text.lines().all(|l| l.len() <= 100),
                "{}: a line over 100",
                p.display()
            );
            n += 1;
        }
    }
    assert!(n >= 10, "expected the shader files, found {n}");
}

/// The WGSL parameter blocks have the layout of their Rust mirrors (`MlParams`, `SlParams`):
/// the same size and every named field at the same offset.
#[test]
fn parameter_blocks_match_the_rust_structs() {
    use asymloss::config::{MlParams, SlParams};
    use asymloss::wgpu::shaders::ModuleKind;
    use asymloss::DType;
    use std::mem::{offset_of, size_of};

    let ml: Vec<(&str, usize)> = vec![
        ("rows", offset_of!(MlParams, rows)),
        ("cols", offset_of!(MlParams, cols)),
        ("gamma_pos", offset_of!(MlParams, gamma_pos)),
        ("gamma_neg", offset_of!(MlParams, gamma_neg)),
        ("clip", offset_of!(MlParams, clip)),
        ("ln_eps", offset_of!(MlParams, ln_eps)),
        ("smoothing", offset_of!(MlParams, smoothing)),
        ("pos_weight", offset_of!(MlParams, pos_weight)),
        ("grad_scale", offset_of!(MlParams, grad_scale)),
        ("flags", offset_of!(MlParams, flags)),
    ];
    let sl: Vec<(&str, usize)> = vec![
        ("rows", offset_of!(SlParams, rows)),
        ("cols", offset_of!(SlParams, cols)),
        ("gamma_pos", offset_of!(SlParams, gamma_pos)),
        ("gamma_neg", offset_of!(SlParams, gamma_neg)),
        ("a_target", offset_of!(SlParams, a_target)),
        ("a_other", offset_of!(SlParams, a_other)),
        ("grad_scale", offset_of!(SlParams, grad_scale)),
        ("has_ignore", offset_of!(SlParams, has_ignore)),
        ("ignore_index", offset_of!(SlParams, ignore_index)),
    ];
    let cases = [
        (
            ModuleKind::MultiLabel(DType::F32, asymloss::wgpu::TargetType::F32),
            size_of::<MlParams>(),
            ml,
        ),
        (
            ModuleKind::SingleLabel(DType::F32),
            size_of::<SlParams>(),
            sl,
        ),
    ];
    for (kind, size, fields) in cases {
        let key = ModuleKey {
            kind,
            subgroups: false,
        };
        let module = validate(&key, caps(false, false)).unwrap();
        let find = |name: &str| {
            module
                .types
                .iter()
                .find(|(_, t)| t.name.as_deref() == Some(name))
                .map(|(_, t)| t.inner.clone())
                .unwrap_or_else(|| panic!("{}: no struct {name}", key.label()))
        };
        let naga::TypeInner::Struct { members, span } = find("Params") else {
            panic!("Params is not a struct");
        };
        assert_eq!(span as usize, size, "{}: Params size", key.label());
        for (name, off) in fields {
            let m = members
                .iter()
                .find(|m| m.name.as_deref() == Some(name))
                .unwrap_or_else(|| panic!("{}: Params has no {name}", key.label()));
            assert_eq!(m.offset as usize, off, "{}: Params.{name}", key.label());
        }
        // The launch block is 16 words (src/wgpu/plan.rs `Launch`).
        let naga::TypeInner::Struct { span, .. } = find("Launch") else {
            panic!("Launch is not a struct");
        };
        assert_eq!(span, 64, "{}: Launch size", key.label());
    }
}
