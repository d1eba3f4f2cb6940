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
    assert_eq!(variants.len(), 18, "3 dtypes x (2 multi-label target types + 1) x 2");
    for key in &variants {
        let module = validate(key, caps(key.needs_f16(), key.subgroups))
            .unwrap_or_else(|e| panic!("{}: {e}", key.label()));
        let names: Vec<&str> = module.entry_points.iter().map(|e| e.name.as_str()).collect();
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
        assert_eq!(no_f16.is_err(), key.needs_f16(), "{} without f16", key.label());
        let no_sg = validate(&key, caps(key.needs_f16(), false));
        assert_eq!(no_sg.is_err(), key.subgroups, "{} without subgroups", key.label());
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
            assert!(text.lines().all(|l| l.len() <= 100), "{}: a line over 100", p.display());
            n += 1;
        }
    }
    assert!(n >= 10, "expected the shader files, found {n}");
}
