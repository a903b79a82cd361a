//! The `export-model` stage's params.

use dvx_stage_api::{ParamDoc, ParamError, ParamsDoc};
use serde::{Deserialize, Serialize};

/// What to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Format {
    /// A full (merged) model as one GGUF file for llama.cpp / Ollama.
    Gguf,
    /// A LoRA adapter as llama.cpp's adapter GGUF.
    GgufLora,
    /// A LoRA adapter as a PEFT folder.
    Peft,
    /// A full model folder transformers loads (adapters merged in).
    Merged,
}

/// All of `export-model`'s params.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportModelParams {
    /// What to write.
    pub format: Format,
    /// Storage type: `f16`, `q8_0` or `f32` for GGUF; `base`, `f32`, `f16`
    /// or `bf16` for `merged`.
    #[serde(default)]
    pub dtype: Option<String>,
    /// `general.name` of a GGUF; default the model folder's name.
    #[serde(default)]
    pub name: Option<String>,
}

impl ExportModelParams {
    /// The dtype, with its per-format default.
    pub fn dtype(&self) -> &str {
        match (&self.dtype, self.format) {
            (Some(d), _) => d,
            (None, Format::Gguf) => "f16",
            (None, Format::GgufLora) => "f32",
            (None, _) => "base",
        }
    }

    /// Errors name the field.
    pub fn validate(&self) -> Result<(), ParamError> {
        let ok: &[&str] = match self.format {
            Format::Gguf | Format::GgufLora => &["f32", "f16", "q8_0"],
            Format::Merged => &["base", "f32", "f16", "bf16"],
            Format::Peft => &["base"],
        };
        if !ok.contains(&self.dtype()) {
            let what = if self.format == Format::Peft {
                "is not used by `format: peft` (adapters keep their f32 weights)".to_string()
            } else {
                format!("`{}` is not one of {}", self.dtype(), ok.join(", "))
            };
            return Err(ParamError::field("dtype", what));
        }
        Ok(())
    }
}

impl ParamsDoc for ExportModelParams {
    fn doc() -> Vec<ParamDoc> {
        vec![
            ParamDoc::new(
                "format",
                "gguf | gguf-lora | peft | merged",
                "required",
                "GGUF model, llama.cpp LoRA GGUF, PEFT adapter folder, or merged transformers folder.",
            ),
            ParamDoc::new(
                "dtype",
                "f16 | q8_0 | f32 (GGUF); base | f32 | f16 | bf16 (merged)",
                "f16 (gguf), f32 (gguf-lora), base (merged)",
                "Storage type of the matrices; vectors stay f32 in GGUF.",
            ),
            ParamDoc::new("name", "string", "-", "GGUF `general.name`; default: the model folder's name."),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dvx_stage_api::parse_params;
    use serde_json::json;

    fn err(v: serde_json::Value) -> ParamError {
        match parse_params::<ExportModelParams>(&v) {
            Ok(p) => p.validate().unwrap_err(),
            Err(e) => e,
        }
    }

    #[test]
    fn defaults_and_errors() {
        let p: ExportModelParams = parse_params(&json!({"format": "gguf"})).unwrap();
        assert_eq!(p.dtype(), "f16");
        assert_eq!(err(json!({"format": "gguf", "dtype": "q4_0"})).field.as_deref(), Some("dtype"));
        assert_eq!(err(json!({"format": "merged", "dtype": "q8_0"})).field.as_deref(), Some("dtype"));
        assert_eq!(err(json!({"format": "peft", "dtype": "f16"})).field.as_deref(), Some("dtype"));
        assert_eq!(err(json!({"format": "onnx"})).field.as_deref(), Some("format"));
        assert_eq!(err(json!({})).field.as_deref(), Some("format"));
    }
}
