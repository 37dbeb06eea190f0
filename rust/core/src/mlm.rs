//! Masked-language-model masking: the procedure of transformers' `DataCollatorForLanguageModeling`,
//! drawn from a small seedable generator instead of torch's global one.
//!
//! Per token that may be masked (not special, not padding): masked with `mlm_probability`; a masked
//! token becomes the mask token with `mask_replace_prob`, otherwise a uniformly random vocabulary id
//! with `random_replace_prob / (1 - mask_replace_prob)`, otherwise it is kept. Labels hold the
//! original id where masked and -100 elsewhere. This is the same distribution as transformers'.

use crate::error::{FerrotuneError, Result};

/// The label of positions the loss ignores (PyTorch's `ignore_index`).
pub const IGNORE_INDEX: i64 = -100;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MaskingConfig {
    pub mlm_probability: f64,
    pub mask_replace_prob: f64,
    pub random_replace_prob: f64,
    pub mask_token_id: i64,
    /// Random replacements are drawn from `0..vocab_size` (`len(tokenizer)`, added tokens included).
    pub vocab_size: u64,
}

impl MaskingConfig {
    pub fn validate(&self) -> Result<()> {
        let in_unit = |p: f64| (0.0..=1.0).contains(&p);
        if !in_unit(self.mlm_probability) {
            return Err(FerrotuneError::InvalidArgument(format!(
                "mlm_probability should be between 0 and 1, got {}",
                self.mlm_probability
            )));
        }
        if !in_unit(self.mask_replace_prob) || !in_unit(self.random_replace_prob) {
            return Err(FerrotuneError::InvalidArgument(format!(
                "mask_replace_prob and random_replace_prob should be between 0 and 1, got {} and {}",
                self.mask_replace_prob, self.random_replace_prob
            )));
        }
        if self.mask_replace_prob + self.random_replace_prob > 1.0 + 1e-12 {
            return Err(FerrotuneError::InvalidArgument(
                "The sum of mask_replace_prob and random_replace_prob should not exceed 1".into(),
            ));
        }
        if self.random_replace_prob > 0.0 && self.vocab_size == 0 {
            return Err(FerrotuneError::InvalidArgument(
                "random replacement needs a vocabulary of at least one token".into(),
            ));
        }
        Ok(())
    }
}

/// SplitMix64: tiny, fast, and good enough statistically for masking decisions; fully determined
/// by its seed, so a batch can be reproduced from `(seed, batch index)` alone.
#[derive(Debug, Clone)]
pub struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    pub fn new(seed: u64) -> Self {
        SplitMix64 { state: seed }
    }

    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1) with 53 bits of precision.
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    pub fn bernoulli(&mut self, p: f64) -> bool {
        self.next_f64() < p
    }

    /// Uniform in `0..bound` (Lemire's multiply-shift; the bias is below 2^-40 for any vocabulary).
    pub fn below(&mut self, bound: u64) -> u64 {
        ((self.next_u64() as u128 * bound as u128) >> 64) as u64
    }
}

/// Masks `input_ids` in place and returns the labels. `maskable(i)` says whether position `i` may
/// be masked at all (false for special and padding tokens).
pub fn mask_tokens(
    input_ids: &mut [i64],
    maskable: impl Fn(usize) -> bool,
    config: &MaskingConfig,
    seed: u64,
) -> Result<Vec<i64>> {
    config.validate()?;
    let mut rng = SplitMix64::new(seed);
    let mut labels = vec![IGNORE_INDEX; input_ids.len()];
    // transformers skips the random-word draw when nothing can be replaced at random.
    let random_prob = if config.mask_replace_prob >= 1.0 || config.random_replace_prob <= 0.0 {
        0.0
    } else {
        config.random_replace_prob / (1.0 - config.mask_replace_prob)
    };
    for (i, id) in input_ids.iter_mut().enumerate() {
        if !maskable(i) || !rng.bernoulli(config.mlm_probability) {
            continue;
        }
        labels[i] = *id;
        if rng.bernoulli(config.mask_replace_prob) {
            *id = config.mask_token_id;
        } else if random_prob > 0.0 && rng.bernoulli(random_prob) {
            *id = rng.below(config.vocab_size) as i64;
        }
    }
    Ok(labels)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(p: f64) -> MaskingConfig {
        MaskingConfig {
            mlm_probability: p,
            mask_replace_prob: 0.8,
            random_replace_prob: 0.1,
            mask_token_id: 103,
            vocab_size: 1000,
        }
    }

    #[test]
    fn rates_match_the_configuration() {
        let n = 200_000;
        let mut ids: Vec<i64> = (0..n).map(|i| 2000 + (i % 7)).collect();
        let original = ids.clone();
        let labels = mask_tokens(&mut ids, |_| true, &config(0.15), 7).unwrap();
        let masked = labels.iter().filter(|&&l| l != IGNORE_INDEX).count() as f64;
        let as_mask = ids.iter().filter(|&&v| v == 103).count() as f64;
        let kept = (0..n as usize)
            .filter(|&i| labels[i] != IGNORE_INDEX && ids[i] == original[i])
            .count() as f64;
        assert!((masked / n as f64 - 0.15).abs() < 0.005, "{masked}");
        assert!((as_mask / masked - 0.8).abs() < 0.01);
        // the remaining 20% split evenly between random ids (all < 1000 here) and kept
        assert!((kept / masked - 0.1).abs() < 0.01);
    }

    #[test]
    fn unmaskable_positions_are_never_touched_and_seed_reproduces() {
        let mut a: Vec<i64> = vec![5; 1000];
        let mut b = a.clone();
        let la = mask_tokens(&mut a, |i| i % 2 == 0, &config(1.0), 3).unwrap();
        let lb = mask_tokens(&mut b, |i| i % 2 == 0, &config(1.0), 3).unwrap();
        assert_eq!((a.clone(), la.clone()), (b, lb));
        for i in (1..1000).step_by(2) {
            assert_eq!((a[i], la[i]), (5, IGNORE_INDEX));
        }
        assert!(la.iter().step_by(2).all(|&l| l == 5));
    }

    #[test]
    fn bad_probabilities_are_refused() {
        let mut ids = vec![1i64];
        let mut bad = config(0.15);
        bad.mask_replace_prob = 0.95;
        assert!(mask_tokens(&mut ids, |_| true, &bad, 0).is_err());
        assert!(mask_tokens(&mut ids, |_| true, &config(1.5), 0).is_err());
    }
}
