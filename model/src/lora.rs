//! LoRA: a frozen base linear `W` plus a trainable low-rank update
//! `(alpha / rank) · B A`, with `A` random and `B` zero so training starts
//! from the base model exactly.

use std::collections::BTreeMap;

use candle_core::{Device, Result, Tensor};
use serde::{Deserialize, Serialize};

use crate::model::{module_path, to_f32, ArchConfig, Transformer, LORA_TARGETS};
use crate::rng::Rng;

/// The `lora` param, also stored in an adapter's `config.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LoraParams {
    /// Rank of the update.
    pub rank: usize,
    /// Scale numerator: the update is multiplied by `alpha / rank`.
    pub alpha: f64,
    /// Dropout on the adapter's input while training.
    pub dropout: f64,
    /// Which linears get adapters: q, k, v, o, gate, up, down.
    pub targets: Vec<String>,
    /// Write the base with the update folded in (`model.safetensors`)
    /// instead of the adapter alone.
    pub merge: bool,
}

impl Default for LoraParams {
    fn default() -> Self {
        LoraParams { rank: 16, alpha: 32.0, dropout: 0.05, targets: vec!["q".into(), "v".into()], merge: false }
    }
}

impl LoraParams {
    /// Field and message of the first problem.
    pub fn validate(&self) -> std::result::Result<(), (String, String)> {
        if self.rank == 0 {
            return Err(("lora.rank".into(), "must be at least 1".into()));
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return Err(("lora.dropout".into(), "must be in [0, 1)".into()));
        }
        if self.targets.is_empty() {
            return Err(("lora.targets".into(), "name at least one of q, k, v, o, gate, up, down".into()));
        }
        for (i, t) in self.targets.iter().enumerate() {
            if !LORA_TARGETS.contains(&t.as_str()) {
                return Err((
                    format!("lora.targets.{i}"),
                    format!("unknown target `{t}` (q, k, v, o, gate, up, down)"),
                ));
            }
        }
        Ok(())
    }

    fn scale(&self) -> f64 {
        self.alpha / self.rank as f64
    }
}

/// One adapter.
pub struct Lora {
    /// `[rank, in]`.
    pub a: Tensor,
    /// `[out, rank]`.
    pub b: Tensor,
    scale: f64,
    dropout: f64,
}

impl Lora {
    /// The update for `x` (`[n, in]`); dropout only when `rng` is given.
    pub fn forward(&self, x: &Tensor, rng: Option<&mut Rng>) -> Result<Tensor> {
        let x = match rng {
            Some(rng) if self.dropout > 0.0 => {
                let keep = 1.0 / (1.0 - self.dropout);
                let mask: Vec<f32> = (0..x.elem_count())
                    .map(|_| if rng.next_f64() < self.dropout { 0.0 } else { keep as f32 })
                    .collect();
                (x * Tensor::from_vec(mask, x.shape(), x.device())?)?
            }
            _ => x.clone(),
        };
        x.matmul(&self.a.t()?)?.matmul(&self.b.t()?)? * self.scale
    }
}

/// Adapter weight names and shapes for `cfg`, in name order:
/// `<module>.lora_a.weight` `[rank, in]` and `<module>.lora_b.weight` `[out, rank]`.
pub fn adapter_shapes(cfg: &ArchConfig, p: &LoraParams) -> Vec<(String, Vec<usize>)> {
    let shapes: BTreeMap<String, Vec<usize>> = cfg.weight_shapes().into_iter().collect();
    let mut out = Vec::new();
    for l in 0..cfg.num_hidden_layers {
        for t in &p.targets {
            let m = module_path(l, t);
            let w = &shapes[&format!("{m}.weight")];
            out.push((format!("{m}.lora_a.weight"), vec![p.rank, w[1]]));
            out.push((format!("{m}.lora_b.weight"), vec![w[0], p.rank]));
        }
    }
    out.sort();
    out
}

/// Fresh adapters: `A` uniform in ±1/sqrt(in), `B` zero.
pub fn init_adapters(cfg: &ArchConfig, p: &LoraParams, seed: u64, dev: &Device) -> Result<BTreeMap<String, Tensor>> {
    let mut out = BTreeMap::new();
    for (name, shape) in adapter_shapes(cfg, p) {
        let n: usize = shape.iter().product();
        let data: Vec<f32> = if name.ends_with("lora_a.weight") {
            let bound = 1.0 / (shape[1] as f64).sqrt();
            let mut rng = Rng::for_name(seed, &name);
            (0..n).map(|_| ((rng.next_f64() * 2.0 - 1.0) * bound) as f32).collect()
        } else {
            vec![0.0; n]
        };
        out.insert(name, Tensor::from_vec(data, shape, dev)?);
    }
    Ok(out)
}

/// Put adapters beside the model's linears.
pub fn attach(model: &mut Transformer, p: &LoraParams, adapters: &BTreeMap<String, Tensor>) -> Result<()> {
    for l in 0..model.cfg.num_hidden_layers {
        for t in &p.targets {
            let m = module_path(l, t);
            let get = |suffix: &str| {
                adapters
                    .get(&format!("{m}.{suffix}"))
                    .cloned()
                    .ok_or_else(|| candle_core::Error::Msg(format!("adapter weight `{m}.{suffix}` is missing")))
            };
            let lora =
                Lora { a: get("lora_a.weight")?, b: get("lora_b.weight")?, scale: p.scale(), dropout: p.dropout };
            let lin = model
                .linear_mut(l, t)
                .ok_or_else(|| candle_core::Error::Msg(format!("no linear `{t}` in layer {l}")))?;
            lin.lora = Some(lora);
        }
    }
    Ok(())
}

/// Base weights with each adapter folded in: `W + scale · B A`.
pub fn merge(
    cfg: &ArchConfig,
    p: &LoraParams,
    base: &BTreeMap<String, Tensor>,
    adapters: &BTreeMap<String, Tensor>,
) -> Result<BTreeMap<String, Tensor>> {
    let mut out = base.clone();
    for l in 0..cfg.num_hidden_layers {
        for t in &p.targets {
            let m = module_path(l, t);
            let name = format!("{m}.weight");
            let a = &adapters[&format!("{m}.lora_a.weight")];
            let b = &adapters[&format!("{m}.lora_b.weight")];
            // In f32, then back to the base's dtype (bf16 stays bf16).
            let stored = &base[&name];
            let w = (to_f32(stored.clone())? + (b.matmul(a)? * p.scale())?)?.to_dtype(stored.dtype())?;
            out.insert(name, w);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::init_weights;
    use crate::testkit::tiny;

    #[test]
    fn zero_b_keeps_base_and_merge_matches() {
        let dev = Device::Cpu;
        let cfg = tiny(7);
        let base = init_weights(&cfg, 3, &dev).unwrap();
        let p = LoraParams { targets: vec!["q".into(), "down".into()], rank: 2, ..Default::default() };
        let mut ad = init_adapters(&cfg, &p, 3, &dev).unwrap();
        assert_eq!(ad.len(), 4);
        assert_eq!(ad["model.layers.0.mlp.down_proj.lora_a.weight"].dims(), &[2, 32]);
        let ids = Tensor::from_slice(&[1u32, 2, 3], (1, 3), &dev).unwrap();
        let plain = Transformer::new(&cfg, &base, &dev).unwrap().forward(&ids, None).unwrap();
        let mut m = Transformer::new(&cfg, &base, &dev).unwrap();
        attach(&mut m, &p, &ad).unwrap();
        let with = m.forward(&ids, None).unwrap();
        let v = |t: &Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert_eq!(v(&plain), v(&with));
        // A non-zero B: the merged weights give the adapted model's logits.
        let k = "model.layers.0.self_attn.q_proj.lora_b.weight".to_string();
        ad.insert(k.clone(), (ad[&k].ones_like().unwrap() * 0.01).unwrap());
        let mut m = Transformer::new(&cfg, &base, &dev).unwrap();
        attach(&mut m, &p, &ad).unwrap();
        let adapted = v(&m.forward(&ids, None).unwrap());
        let merged = merge(&cfg, &p, &base, &ad).unwrap();
        let fused = v(&Transformer::new(&cfg, &merged, &dev).unwrap().forward(&ids, None).unwrap());
        assert_ne!(adapted, v(&plain));
        for (a, b) in adapted.iter().zip(&fused) {
            assert!((a - b).abs() < 1e-4, "{a} vs {b}");
        }
    }

    #[test]
    fn bad_params() {
        let p = LoraParams { targets: vec!["q".into(), "qq".into()], ..Default::default() };
        assert_eq!(p.validate().unwrap_err().0, "lora.targets.1");
        let p = LoraParams { rank: 0, ..Default::default() };
        assert_eq!(p.validate().unwrap_err().0, "lora.rank");
    }
}
