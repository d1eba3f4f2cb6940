//! WGSL sources and their composition.
//!
//! WGSL has no `#include`, so each shader module is the concatenation of small files from
//! `shaders/`: the element math (`asl_common.wgsl`), one reduction flavour
//! (`reduce_subgroup.wgsl` or `reduce_workgroup.wgsl`), the workspace and launch block
//! (`workspace.wgsl`), the logits/gradient access for one dtype (`logits_<dtype>.wgsl`), the
//! multi-label target access (`targets_<type>.wgsl`), and the loss kernels
//! (`multi_label.wgsl` or `single_label.wgsl`). Everything that does not change a type
//! (pass, reduction, workgroup size, class index width, row cache) is an `override` constant
//! set at pipeline creation, so one module serves every pass.
//!
//! [`all_variants`] lists every module the backend can create, with the capabilities it
//! needs; `tests/shader_validation.rs` validates each one with naga.

use crate::tensor::DType;

const COMMON: &str = include_str!("../../shaders/asl_common.wgsl");
const REDUCE_SUBGROUP: &str = include_str!("../../shaders/reduce_subgroup.wgsl");
const REDUCE_WORKGROUP: &str = include_str!("../../shaders/reduce_workgroup.wgsl");
const WORKSPACE: &str = include_str!("../../shaders/workspace.wgsl");
const LOGITS_F32: &str = include_str!("../../shaders/logits_f32.wgsl");
const LOGITS_F16: &str = include_str!("../../shaders/logits_f16.wgsl");
const LOGITS_BF16: &str = include_str!("../../shaders/logits_bf16.wgsl");
const TARGETS_F32: &str = include_str!("../../shaders/targets_f32.wgsl");
const TARGETS_U8: &str = include_str!("../../shaders/targets_u8.wgsl");
const MULTI_LABEL: &str = include_str!("../../shaders/multi_label.wgsl");
const SINGLE_LABEL: &str = include_str!("../../shaders/single_label.wgsl");

/// The element type of multi-label targets in a device buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TargetType {
    /// f32 soft labels (negative = unknown).
    F32,
    /// u8 hard labels (255 = unknown), four to a 32-bit word.
    U8,
}

impl TargetType {
    /// Bytes per element.
    pub fn size(self) -> u64 {
        match self {
            TargetType::F32 => 4,
            TargetType::U8 => 1,
        }
    }
}

/// The element type of single-label class indices in a device buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ClassType {
    /// i32 indices.
    I32,
    /// u32 indices.
    U32,
    /// i64 indices (PyTorch's `long`), read as two 32-bit words; a value outside the i32 range
    /// is reported as out of range.
    I64,
}

impl ClassType {
    /// Bytes per element.
    pub fn size(self) -> u64 {
        match self {
            ClassType::I32 | ClassType::U32 => 4,
            ClassType::I64 => 8,
        }
    }

    /// The `CLASS_KIND` override value of `single_label.wgsl`.
    pub(crate) fn kind(self) -> u32 {
        match self {
            ClassType::I32 => 0,
            ClassType::U32 => 1,
            ClassType::I64 => 2,
        }
    }
}

/// Which loss a module computes, and the type-dependent parts of its source.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ModuleKind {
    /// The multi-label loss for logits of one dtype and targets of one type.
    MultiLabel(DType, TargetType),
    /// The single-label loss for logits of one dtype (the class index width is an override).
    SingleLabel(DType),
}

/// One shader module: its kind and whether it uses subgroup operations.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ModuleKey {
    /// Loss and types.
    pub kind: ModuleKind,
    /// Subgroup reductions (`Features::SUBGROUP`) or the workgroup-memory fallback.
    pub subgroups: bool,
}

impl ModuleKey {
    /// The logits' dtype.
    pub fn dtype(&self) -> DType {
        match self.kind {
            ModuleKind::MultiLabel(d, _) | ModuleKind::SingleLabel(d) => d,
        }
    }

    /// True when the module needs `Features::SHADER_F16`.
    pub fn needs_f16(&self) -> bool {
        self.dtype() == DType::F16
    }

    /// A label for wgpu objects and logs (`asl_multi_label_f32_u8_sg`).
    pub fn label(&self) -> String {
        let base = match self.kind {
            ModuleKind::MultiLabel(d, t) => {
                let t = if t == TargetType::U8 { "u8" } else { "f32" };
                format!("asl_multi_label_{}_{t}", d.name())
            }
            ModuleKind::SingleLabel(d) => format!("asl_single_label_{}", d.name()),
        };
        if self.subgroups {
            base + "_sg"
        } else {
            base + "_wg"
        }
    }

    /// The composed WGSL source.
    pub fn source(&self) -> String {
        let mut parts: Vec<&str> = Vec::with_capacity(8);
        if self.needs_f16() {
            // The directive must come first in a module.
            parts.push("enable f16;\n");
        }
        parts.push(COMMON);
        parts.push(if self.subgroups {
            REDUCE_SUBGROUP
        } else {
            REDUCE_WORKGROUP
        });
        parts.push(WORKSPACE);
        parts.push(match self.dtype() {
            DType::F32 => LOGITS_F32,
            DType::F16 => LOGITS_F16,
            DType::Bf16 => LOGITS_BF16,
        });
        match self.kind {
            ModuleKind::MultiLabel(_, t) => {
                parts.push(if t == TargetType::U8 {
                    TARGETS_U8
                } else {
                    TARGETS_F32
                });
                parts.push(MULTI_LABEL);
            }
            ModuleKind::SingleLabel(_) => parts.push(SINGLE_LABEL),
        }
        parts.join("\n")
    }

    /// The compute entry points of the module.
    pub fn entry_points(&self) -> &'static [&'static str] {
        match self.kind {
            ModuleKind::MultiLabel(..) => {
                &["ws_init", "ws_finish", "ml_count", "ml_main", "ml_report"]
            }
            ModuleKind::SingleLabel(_) => {
                &["ws_init", "ws_finish", "sl_count", "sl_main", "sl_report"]
            }
        }
    }
}

/// Every module the backend can create (each dtype, target type and reduction flavour).
pub fn all_variants() -> Vec<ModuleKey> {
    let mut v = Vec::new();
    for subgroups in [false, true] {
        for d in [DType::F32, DType::F16, DType::Bf16] {
            for t in [TargetType::F32, TargetType::U8] {
                v.push(ModuleKey {
                    kind: ModuleKind::MultiLabel(d, t),
                    subgroups,
                });
            }
            v.push(ModuleKey {
                kind: ModuleKind::SingleLabel(d),
                subgroups,
            });
        }
    }
    v
}
