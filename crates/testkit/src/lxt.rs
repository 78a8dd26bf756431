//! Comparing our attributions with an lxt reference file (`testdata/*/lxt*_ref.py`): the
//! reference's prompts must be ours token for token before any number is compared.

use hd_formats::tensors::TensorFile;

/// Checks that reference `r` (its `offsets` `[n+1]` and `token_ids`) holds exactly the
/// token ids `ours`, prompt by prompt; returns the offsets.
pub fn same_prompts(r: &TensorFile, ours: &[Vec<u32>]) -> Vec<usize> {
    let column =
        |name: &str| -> Vec<f64> { r.get(name).unwrap_or_else(|e| panic!("{e}")).to_f64_vec() };
    let offsets: Vec<usize> = column("offsets").iter().map(|&v| v as usize).collect();
    let ref_ids: Vec<u32> = column("token_ids").iter().map(|&v| v as u32).collect();
    assert_eq!(offsets.len(), ours.len() + 1, "prompt count");
    for (i, ids) in ours.iter().enumerate() {
        assert_eq!(
            ids.as_slice(),
            &ref_ids[offsets[i]..offsets[i + 1]],
            "prompt {i}: token ids differ from transformers'"
        );
    }
    offsets
}
