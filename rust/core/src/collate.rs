//! Collation plans: which columns of a batch are padded, with which value, to which width — the
//! one description behind `tokenizer.pad`, every data collator and the streaming loader's padded
//! batches — and flattening (padding-free packing of rows into one sequence), behind
//! `DataCollatorWithFlattening` and the loader's packed batches.
//!
//! A new kind of column (a loss mask, decoder ids...) is one more [`ColumnRule`]: its pad value and
//! its [`Width`] rule. The plan checks the columns against each other and lays out one
//! [`PadJob`] per output; the caller chooses where the padded values go (a `Vec`, a NumPy array).

use crate::arrow::{list_rows, read_numbers, ArrayView, Numbers};
use crate::error::{FerrotuneError, Result};
use crate::pad::{
    check_same_lengths, pad_rows, OnesLike, PadSpec, PadTarget, PaddedColumn, RowSource,
};

/// The width a column is padded to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Width {
    /// The reference column's width, and row for row as many values as the reference (the keys
    /// `tokenizer.pad` pads together: ids, masks, token type ids).
    Aligned,
    /// The reference column's width, rows of any length (token-classification labels).
    Reference,
    /// Its own width under its own target, with the plan's multiple and side (seq2seq labels).
    Own(PadTarget),
}

impl Width {
    /// A collator's padding mode for a column padded on its own terms: `"main"` (the reference's
    /// width), or a strategy name as [`PadSpec::parse`] reads it (`"max_length"` with `length`).
    pub fn parse(mode: &str, length: Option<usize>) -> Result<Self> {
        Ok(match mode {
            "main" => Width::Reference,
            strategy => Width::Own(PadSpec::parse(strategy, length, None, "right")?.target),
        })
    }
}

/// One column a plan pads.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ColumnRule {
    pub name: String,
    pub pad_value: i64,
    pub width: Width,
}

impl ColumnRule {
    pub fn new(name: impl Into<String>, pad_value: i64, width: Width) -> Self {
        ColumnRule {
            name: name.into(),
            pad_value,
            width,
        }
    }
}

/// The resolved padding of a batch: the spec, the columns (the reference first) and the column of
/// ones made when the batch lacks it. Built once per setting, applied to every batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CollationPlan {
    pub spec: PadSpec,
    /// The reference column (the model's main input, whose rows set the batch width) first.
    columns: Vec<ColumnRule>,
    /// A column (one of `columns`) made of ones as long as the reference's rows when the batch
    /// has none: transformers' fresh `attention_mask`.
    ones_when_missing: Option<String>,
}

/// The rows a [`PadJob`] pads: a column of the batch, or ones shaped like the reference.
pub enum JobRows<'a> {
    Given(&'a dyn RowSource),
    Ones(OnesLike<'a>),
}

/// One output of a plan: a column of rows, its pad value and the width it is padded to.
pub struct PadJob<'a> {
    pub name: &'a str,
    pub rows: JobRows<'a>,
    pub pad_value: i64,
    pub width: usize,
}

impl PadJob<'_> {
    pub fn source(&self) -> &dyn RowSource {
        match &self.rows {
            JobRows::Given(rows) => *rows,
            JobRows::Ones(ones) => ones,
        }
    }

    /// Whether every row fits in the width, so that the output is a `rows x width` matrix.
    pub fn is_matrix(&self) -> bool {
        self.source().fits(self.width)
    }

    /// Pads into `out`, a `rows x width` matrix (only when [`PadJob::is_matrix`]).
    pub fn fill(&self, spec: &PadSpec, out: &mut [i64]) {
        self.source()
            .pad_into(self.width, self.pad_value, spec.side, out)
    }

    /// Pads into a new column: a matrix, or ragged rows when some rows are longer than the width.
    pub fn padded(&self, spec: &PadSpec) -> PaddedColumn {
        pad_rows(
            self.name,
            self.source(),
            self.width,
            self.pad_value,
            spec.side,
        )
    }
}

impl CollationPlan {
    /// `columns` must start with the reference column, [`Width::Aligned`]; `ones_when_missing`
    /// must name one of them.
    pub fn new(
        spec: PadSpec,
        columns: Vec<ColumnRule>,
        ones_when_missing: Option<String>,
    ) -> Result<Self> {
        let Some(reference) = columns.first() else {
            return Err(FerrotuneError::InvalidArgument(
                "a collation plan needs at least the model's main input".into(),
            ));
        };
        if reference.width != Width::Aligned {
            return Err(FerrotuneError::InvalidArgument(format!(
                "the reference column '{}' sets the batch width: it cannot have a width rule of its own",
                reference.name
            )));
        }
        if let Some(ones) = &ones_when_missing {
            if !columns
                .iter()
                .any(|c| &c.name == ones && c.width == Width::Aligned)
            {
                return Err(FerrotuneError::InvalidArgument(format!(
                    "'{ones}' is made as ones like the reference, so it must be one of the aligned columns"
                )));
            }
        }
        Ok(CollationPlan {
            spec,
            columns,
            ones_when_missing,
        })
    }

    pub fn reference(&self) -> &str {
        &self.columns[0].name
    }

    pub fn columns(&self) -> &[ColumnRule] {
        &self.columns
    }

    /// Whether the plan pads this key (its values are rows of token ids).
    pub fn pads(&self, key: &str) -> bool {
        self.columns.iter().any(|c| c.name == key)
    }

    /// transformers' error when the batch lacks the model's main input; `names` are the batch's keys.
    pub fn missing_reference<S: AsRef<str>>(&self, names: &[S]) -> FerrotuneError {
        let quoted: Vec<String> = names.iter().map(|n| format!("'{}'", n.as_ref())).collect();
        FerrotuneError::InvalidInput(format!(
            "You should supply an encoding or a list of encodings to this method that includes {}, \
             but you provided [{}]",
            self.reference(),
            quoted.join(", ")
        ))
    }

    /// The name of the column of ones this batch needs (the plan makes one and the batch has none).
    pub fn made_column(&self, names: &[&str]) -> Option<&str> {
        self.ones_when_missing
            .as_deref()
            .filter(|ones| !names.contains(ones))
    }

    /// Lays out the padding of a batch whose padded columns are `inputs` (name, rows): one job per
    /// rule whose column is present (or made), in rule order. Aligned columns are checked against
    /// the reference row for row.
    pub fn jobs<'a>(&'a self, inputs: &[(&str, &'a dyn RowSource)]) -> Result<Vec<PadJob<'a>>> {
        let find = |key: &str| {
            inputs
                .iter()
                .find(|(name, _)| *name == key)
                .map(|(_, r)| *r)
        };
        let Some(reference) = find(self.reference()) else {
            let names: Vec<&str> = inputs.iter().map(|(name, _)| *name).collect();
            return Err(self.missing_reference(&names));
        };
        let lengths = reference.row_lengths();
        let width = self.spec.width(lengths.iter().copied());
        let names: Vec<&str> = inputs.iter().map(|(name, _)| *name).collect();
        let made = self.made_column(&names);
        let mut jobs = Vec::with_capacity(self.columns.len());
        for rule in &self.columns {
            let rows = match find(&rule.name) {
                Some(rows) => JobRows::Given(rows),
                None if made == Some(rule.name.as_str()) => JobRows::Ones(OnesLike(reference)),
                None => continue,
            };
            let job_width = match rule.width {
                Width::Aligned => {
                    if let JobRows::Given(rows) = rows {
                        check_same_lengths(self.reference(), &lengths, &rule.name, rows)?;
                    }
                    width
                }
                Width::Reference => width,
                Width::Own(target) => {
                    let source: &dyn RowSource = match &rows {
                        JobRows::Given(rows) => *rows,
                        JobRows::Ones(ones) => ones,
                    };
                    self.spec
                        .width_for(target, source.row_lengths().into_iter())
                }
            };
            jobs.push(PadJob {
                name: &rule.name,
                rows,
                pad_value: rule.pad_value,
                width: job_width,
            });
        }
        Ok(jobs)
    }

    /// Pads a batch into new columns, in rule order (see [`CollationPlan::jobs`]).
    pub fn pad(&self, inputs: &[(&str, &dyn RowSource)]) -> Result<Vec<PaddedColumn>> {
        Ok(self
            .jobs(inputs)?
            .iter()
            .map(|job| job.padded(&self.spec))
            .collect())
    }
}

/// One column of an Arrow record batch, as a plan reads it.
pub enum BatchColumn<'a> {
    /// A column the plan pads: its rows, read in place.
    Rows(Box<dyn RowSource + 'a>),
    /// Another column: one number per example.
    Numbers(Numbers),
}

/// The batch is empty: nothing to collate.
pub fn empty_batch() -> FerrotuneError {
    FerrotuneError::EmptyBatch("the batch is empty: a collator needs at least one example".into())
}

impl CollationPlan {
    /// Reads an Arrow record batch (a struct array) for this plan: the padded columns as rows in
    /// place, the others as numbers (with `only_padded`, the others are skipped). Every column is
    /// checked: lists where the plan pads, numbers elsewhere, no nulls.
    pub fn read_record_batch<'a>(
        &self,
        batch: ArrayView<'a>,
        only_padded: bool,
    ) -> Result<Vec<(String, BatchColumn<'a>)>> {
        if batch.format() != "+s" {
            return Err(FerrotuneError::InputType(format!(
                "an Arrow batch to collate must be a record batch (struct), got Arrow format {:?}",
                batch.format()
            )));
        }
        if batch.length() == 0 {
            return Err(empty_batch());
        }
        let mut columns = Vec::with_capacity(batch.n_children());
        let mut names = Vec::with_capacity(batch.n_children());
        for i in 0..batch.n_children() {
            let column = batch
                .field(i)
                .ok_or_else(|| FerrotuneError::InvalidInput("malformed Arrow export".into()))?;
            let name = column.name().into_owned();
            names.push(name.clone());
            let read = if self.pads(&name) {
                BatchColumn::Rows(list_rows(column, &name)?)
            } else if only_padded {
                continue;
            } else if column.format().starts_with("+l") || column.format().starts_with("+L") {
                return Err(FerrotuneError::InputType(format!(
                    "'{name}' holds a list per example but is not a column the collator pads: \
                     remove it (e.g. dataset.remove_columns) or collate it yourself"
                )));
            } else {
                match read_numbers(column, &name)? {
                    Some(numbers) => BatchColumn::Numbers(numbers),
                    None => {
                        return Err(FerrotuneError::InputType(format!(
                            "'{name}' has Arrow type {:?}, which a collator cannot turn into a tensor: \
                             remove the column (e.g. dataset.remove_columns) before collating",
                            column.format()
                        )))
                    }
                }
            };
            columns.push((name, read));
        }
        if !names.iter().any(|name| name == self.reference()) {
            return Err(self.missing_reference(&names));
        }
        Ok(columns)
    }
}

/// Rows flattened into one sequence, `DataCollatorWithFlattening`'s format.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Flattened {
    pub input_ids: Vec<i64>,
    /// Each row's labels with `separator_id` in place of its first value (nothing predicts the
    /// first token of a sequence); an empty row still contributes its separator, as in
    /// transformers.
    pub labels: Vec<i64>,
    /// Restarting at `position_ids_start` for every row.
    pub position_ids: Vec<i64>,
    /// Cumulative row boundaries, `[0, len0, len0 + len1, ...]`.
    pub cu_seq_lens: Vec<i32>,
    /// The longest row.
    pub max_length: usize,
}

/// Flattens `rows` into one sequence; the labels come from `labels` (row for row) when given,
/// from the rows themselves otherwise.
pub fn flatten(
    rows: &dyn RowSource,
    labels: Option<&dyn RowSource>,
    separator_id: i64,
    position_ids_start: i64,
) -> Result<Flattened> {
    let n = rows.rows();
    let label_rows = labels.unwrap_or(rows);
    if label_rows.rows() != n {
        return Err(FerrotuneError::InvalidInput(format!(
            "'labels' has {} examples but 'input_ids' has {n}",
            label_rows.rows()
        )));
    }
    let lengths = rows.row_lengths();
    let total: usize = lengths.iter().sum();
    if i32::try_from(total).is_err() {
        return Err(FerrotuneError::InvalidInput(format!(
            "{total} tokens do not fit in one flattened batch (cu_seq_lens are int32)"
        )));
    }
    let mut out = Flattened {
        input_ids: vec![0; total],
        position_ids: Vec::with_capacity(total),
        cu_seq_lens: Vec::with_capacity(n + 1),
        ..Flattened::default()
    };
    let label_total: usize = (0..n).map(|r| label_rows.row_len(r).max(1)).sum();
    out.labels = vec![0; label_total];
    out.cu_seq_lens.push(0);
    let (mut at, mut label_at) = (0usize, 0usize);
    for (r, &len) in lengths.iter().enumerate() {
        rows.write_row(r, &mut out.input_ids[at..at + len]);
        at += len;
        out.position_ids
            .extend((0..len as i64).map(|p| p + position_ids_start));
        out.cu_seq_lens.push(at as i32);
        out.max_length = out.max_length.max(len);
        let label_len = label_rows.row_len(r);
        let slot = &mut out.labels[label_at..label_at + label_len.max(1)];
        if label_len > 0 {
            label_rows.write_row(r, slot);
        }
        slot[0] = separator_id;
        label_at += label_len.max(1);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::buffers::{Ragged, Side};

    fn ragged(rows: &[&[i64]]) -> Ragged {
        Ragged::from_rows(rows)
    }

    fn tokenizer_plan(spec: PadSpec) -> CollationPlan {
        CollationPlan::new(
            spec,
            vec![
                ColumnRule::new("input_ids", 0, Width::Aligned),
                ColumnRule::new("token_type_ids", 7, Width::Aligned),
                ColumnRule::new("special_tokens_mask", 1, Width::Aligned),
                ColumnRule::new("attention_mask", 0, Width::Aligned),
            ],
            Some("attention_mask".into()),
        )
        .unwrap()
    }

    #[test]
    fn aligned_columns_share_the_reference_width_and_a_mask_is_made() {
        let ids = ragged(&[&[5, 6, 7], &[8]]);
        let types = ragged(&[&[0, 0, 1], &[0]]);
        let plan = tokenizer_plan(PadSpec::longest(Some(4), Side::Left));
        let out = plan
            .pad(&[("input_ids", &ids), ("token_type_ids", &types)])
            .unwrap();
        let names: Vec<&str> = out.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["input_ids", "token_type_ids", "attention_mask"]);
        assert_eq!(out[0].values, vec![0, 5, 6, 7, 0, 0, 0, 8]);
        assert_eq!(out[1].values, vec![7, 0, 0, 1, 7, 7, 7, 0]);
        assert_eq!(out[2].values, vec![0, 1, 1, 1, 0, 0, 0, 1]);
        assert!(out.iter().all(|c| c.uniform_width == Some(4)));
        assert_eq!(plan.made_column(&["input_ids"]), Some("attention_mask"));
        assert_eq!(plan.made_column(&["input_ids", "attention_mask"]), None);
    }

    #[test]
    fn a_given_mask_is_padded_not_made_and_misaligned_rows_are_reported() {
        let ids = ragged(&[&[5, 6], &[8]]);
        let mask = ragged(&[&[1, 0], &[1]]);
        let plan = tokenizer_plan(PadSpec::longest(None, Side::Right));
        let out = plan
            .pad(&[("input_ids", &ids), ("attention_mask", &mask)])
            .unwrap();
        assert_eq!(out[1].values, vec![1, 0, 1, 0]);
        let bad = ragged(&[&[1, 1], &[1, 1]]);
        let err = plan
            .pad(&[("input_ids", &ids), ("attention_mask", &bad)])
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "example 1: 'attention_mask' has 2 values but 'input_ids' has 1"
        );
        let err = plan.pad(&[("attention_mask", &mask)]).unwrap_err();
        assert!(matches!(err, FerrotuneError::InvalidInput(_)));
        assert!(err
            .to_string()
            .ends_with("that includes input_ids, but you provided ['attention_mask']"));
    }

    #[test]
    fn fixed_width_keeps_longer_rows_whole_and_no_padding_keeps_rows() {
        let ids = ragged(&[&[1, 2, 3], &[4]]);
        let plan = tokenizer_plan(PadSpec::parse("max_length", Some(2), None, "right").unwrap());
        let out = plan.pad(&[("input_ids", &ids)]).unwrap();
        assert_eq!(out[0].uniform_width, None);
        assert_eq!(
            (out[0].values.clone(), out[0].starts.clone()),
            (vec![1, 2, 3, 4, 0], vec![0, 3, 5])
        );
        let plan = tokenizer_plan(PadSpec::parse("do_not_pad", None, Some(8), "right").unwrap());
        let out = plan.pad(&[("input_ids", &ids)]).unwrap();
        assert_eq!(
            (out[0].values.clone(), out[0].starts.clone()),
            (ids.values.clone(), ids.starts.clone())
        );
        assert_eq!(
            out[1].values,
            vec![1, 1, 1, 1],
            "the made mask is unpadded too"
        );
    }

    #[test]
    fn label_rules_reference_width_or_their_own() {
        let ids = ragged(&[&[1, 2, 3], &[4]]);
        let labels = ragged(&[&[9], &[9, 9, 9, 9, 9]]);
        let spec = PadSpec::longest(Some(2), Side::Right);
        let with = |width: Width| {
            let plan = CollationPlan::new(
                spec,
                vec![
                    ColumnRule::new("input_ids", 0, Width::Aligned),
                    ColumnRule::new("labels", -100, width),
                ],
                None,
            )
            .unwrap();
            plan.pad(&[("input_ids", &ids), ("labels", &labels)])
                .unwrap()[1]
                .clone()
        };
        // token classification: the inputs' width (4); the longer label row stays whole
        let reference = with(Width::parse("main", None).unwrap());
        assert_eq!(reference.uniform_width, None);
        assert_eq!(reference.values, vec![9, -100, -100, -100, 9, 9, 9, 9, 9]);
        // seq2seq: its own longest (5), rounded to the multiple (6)
        let own = with(Width::parse("longest", None).unwrap());
        assert_eq!(own.uniform_width, Some(6));
        assert_eq!(&own.values[..6], &[9, -100, -100, -100, -100, -100]);
        let fixed = with(Width::parse("max_length", Some(7)).unwrap());
        assert_eq!(fixed.uniform_width, Some(8));
        let unpadded = with(Width::parse("do_not_pad", None).unwrap());
        assert_eq!(unpadded.values, labels.values);
        assert!(Width::parse("sideways", None).is_err());
        assert!(Width::parse("max_length", None).is_err());
    }

    #[test]
    fn plans_refuse_inconsistent_rules() {
        let spec = PadSpec::NONE;
        assert!(CollationPlan::new(spec, vec![], None).is_err());
        assert!(CollationPlan::new(
            spec,
            vec![ColumnRule::new("input_ids", 0, Width::Reference)],
            None
        )
        .is_err());
        let ids = vec![ColumnRule::new("input_ids", 0, Width::Aligned)];
        assert!(CollationPlan::new(spec, ids.clone(), Some("attention_mask".into())).is_err());
        assert!(CollationPlan::new(spec, ids, None).is_ok());
    }

    #[test]
    fn empty_batches_pad_to_nothing() {
        let plan = tokenizer_plan(PadSpec::longest(Some(8), Side::Right));
        let out = plan.pad(&[("input_ids", &Ragged::new())]).unwrap();
        assert!(out[0].values.is_empty());
        assert_eq!(out[0].starts, vec![0]);
    }

    #[test]
    fn flatten_matches_transformers() {
        let ids = ragged(&[&[1, 2, 3], &[], &[4, 5]]);
        let out = flatten(&ids, None, -100, 0).unwrap();
        assert_eq!(out.input_ids, vec![1, 2, 3, 4, 5]);
        assert_eq!(out.labels, vec![-100, 2, 3, -100, -100, 5]);
        assert_eq!(out.position_ids, vec![0, 1, 2, 0, 1]);
        assert_eq!(out.cu_seq_lens, vec![0, 3, 3, 5]);
        assert_eq!(out.max_length, 3);
        let labels = ragged(&[&[7, 8, 9], &[6], &[5, 4]]);
        let out = flatten(&ids, Some(&labels), -1, 1).unwrap();
        assert_eq!(out.labels, vec![-1, 8, 9, -1, -1, 4]);
        assert_eq!(out.position_ids, vec![1, 2, 3, 1, 2]);
        let err = flatten(&ids, Some(&ragged(&[&[1]])), -1, 0).unwrap_err();
        assert_eq!(
            err.to_string(),
            "'labels' has 1 examples but 'input_ids' has 3"
        );
    }
}
