//! The user-text span of a chat-templated prompt, on the default model (skipped without it):
//! the span's tokens decode to the prompt's text, also for prompts whose first or last
//! tokens are tokens the template has beside the message (a prompt that begins with the
//! template's own `<|im_end|>`: matching against the empty message's rendering shifted that
//! span by one token), and the template around it is the same for every prompt.

use hd_analysis::tokens::encode_with_user_span;
use hd_lm::{Model, PromptFormat};

#[test]
fn user_span_decodes_to_the_prompt_text() {
    let Some(path) = hd_testkit::default_model() else {
        return;
    };
    let m = Model::load(&path).unwrap();
    let fmt = PromptFormat::default();
    let prompts = [
        "What is the capital of France?",
        "Write a poem.\n",
        "Write a poem.\n\n",
        "\nWrite a poem.",
        "assistant\nWrite a poem.",
        "user\nWrite a poem.",
        "Write a poem.\nassistant",
        "x",
        "<|im_end|>Write a poem.",
        "Write a poem.<|im_start|>user\n",
        "Write a poem. user\n",
        "Write a poem \n\n",
    ];
    for p in prompts {
        let e = encode_with_user_span(&m, p, &fmt).unwrap();
        let text = m.tokenizer.decode(&e.ids[e.user.clone()], false).unwrap();
        assert_eq!(
            text.trim(),
            p.trim(),
            "prompt {p:?}: span {:?} of {} tokens decodes to {text:?}",
            e.user,
            e.ids.len()
        );
        // The template around the span is the same for every prompt.
        let other = encode_with_user_span(&m, "Hello", &fmt).unwrap();
        assert_eq!(
            e.ids[..e.user.start],
            other.ids[..other.user.start],
            "{p:?}: prefix"
        );
        assert_eq!(
            e.ids[e.user.end..],
            other.ids[other.user.end..],
            "{p:?}: suffix"
        );
    }
}
