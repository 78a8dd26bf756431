//! Chat templates rendered with minijinja, configured like transformers' Jinja environment
//! (`trim_blocks`, `lstrip_blocks`, Python string methods, `raise_exception`).

use crate::error::{LmError, Result};
use minijinja::{Environment, ErrorKind, Value};

/// A compiled chat template.
#[derive(Debug, Clone)]
pub struct ChatTemplate {
    source: String,
}

/// One chat turn.
#[derive(Debug, Clone)]
pub struct Message {
    /// `system`, `user` or `assistant`.
    pub role: String,
    /// The text of the turn.
    pub content: String,
}

impl ChatTemplate {
    /// Whether the template reads `enable_thinking` (Qwen3's switch), so that the setting
    /// changes the rendered text.
    pub fn uses_thinking(&self) -> bool {
        self.source.contains("enable_thinking")
    }

    /// Wraps a template source; it is compiled (and checked) here.
    pub fn new(source: String) -> Result<Self> {
        let t = ChatTemplate { source };
        t.env()?; // fail early on syntax errors
        Ok(t)
    }

    /// The Jinja source.
    pub fn source(&self) -> &str {
        &self.source
    }

    fn env(&self) -> Result<Environment<'static>> {
        let mut env = environment()?;
        env.add_template_owned("chat", self.source.clone())
            .map_err(|e| LmError::Template(format!("{e:#}")))?;
        Ok(env)
    }

    /// Renders messages, with the assistant header appended when `add_generation_prompt`.
    pub fn render(
        &self,
        messages: &[Message],
        add_generation_prompt: bool,
        bos_token: Option<&str>,
        eos_token: Option<&str>,
    ) -> Result<String> {
        self.render_with(messages, add_generation_prompt, bos_token, eos_token, None)
    }

    /// [`ChatTemplate::render`] with `enable_thinking` set (Qwen3's switch; templates that do
    /// not read it ignore it), or left undefined (`None`) as transformers leaves it by default.
    pub fn render_with(
        &self,
        messages: &[Message],
        add_generation_prompt: bool,
        bos_token: Option<&str>,
        eos_token: Option<&str>,
        enable_thinking: Option<bool>,
    ) -> Result<String> {
        let env = self.env()?;
        let tmpl = env
            .get_template("chat")
            .map_err(|e| LmError::Template(e.to_string()))?;
        tmpl.render(minijinja::context! {
            messages => Value::from(messages.iter().map(|m| minijinja::context! { role => m.role.clone(), content => m.content.clone() }).collect::<Vec<_>>()),
            add_generation_prompt => add_generation_prompt,
            bos_token => bos_token.unwrap_or(""),
            eos_token => eos_token.unwrap_or(""),
            enable_thinking => enable_thinking.map_or(Value::UNDEFINED, Value::from),
        })
        .map_err(|e| LmError::Template(format!("{e:#}")))
    }
}

/// A Jinja environment configured like transformers' (shared by chat templates and
/// [`crate::guard::UserTemplate`]s).
pub(crate) fn environment() -> Result<Environment<'static>> {
    let mut env = Environment::new();
    env.set_syntax(
        minijinja::syntax::SyntaxConfig::builder()
            .trim_blocks(true)
            .lstrip_blocks(true)
            .build()
            .map_err(|e| LmError::Template(e.to_string()))?,
    );
    env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
    env.add_function(
        "raise_exception",
        |msg: String| -> std::result::Result<Value, minijinja::Error> {
            Err(minijinja::Error::new(ErrorKind::InvalidOperation, msg))
        },
    );
    // No `strftime_now`: Llama 3.1 templates then fall back to their fixed default date
    // ("26 Jul 2024", the paper's prompt), which keeps dumps reproducible.
    Ok(env)
}
