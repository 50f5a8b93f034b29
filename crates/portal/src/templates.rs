//! Page templates: minijinja, with the built-in templates embedded in the binary and each one
//! replaceable by a file of the same name in an operator's directory
//! (`--portal-templates DIR`). Templates are checked when the portal starts, so a broken
//! override fails the start with its name and line instead of a broken page later.

use std::path::{Path, PathBuf};

use minijinja::value::Value;
use minijinja::{AutoEscape, Environment};

#[derive(rust_embed::RustEmbed)]
#[folder = "$CARGO_MANIFEST_DIR/templates"]
struct Embedded;

/// Every template the portal renders, checked at start-up.
pub const PAGES: &[&str] = &[
    "layout.html",
    "macros.html",
    "home.html",
    "products.html",
    "product.html",
    "apis.html",
    "api_list.html",
    "api.html",
    "operation.html",
    "try_result.html",
    "try_page.html",
    "signin.html",
    "signup.html",
    "profile.html",
    "keys.html",
    "error.html",
];

#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    #[error("the portal templates directory {0} does not exist or is not a directory")]
    MissingDir(PathBuf),
    #[error("portal template {name} is invalid: {source}")]
    Invalid {
        name: String,
        #[source]
        source: minijinja::Error,
    },
}

pub struct Templates {
    env: Environment<'static>,
}

impl std::fmt::Debug for Templates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Templates").finish_non_exhaustive()
    }
}

/// A template name that stays inside the override directory.
fn plain_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .split('/')
            .all(|part| !part.is_empty() && part != ".." && part != ".")
        && !name.contains('\\')
}

fn load(dir: Option<&Path>, name: &str) -> Result<Option<String>, minijinja::Error> {
    if !plain_name(name) {
        return Ok(None);
    }
    if let Some(dir) = dir {
        let path = dir.join(name);
        if path.is_file() {
            return std::fs::read_to_string(&path).map(Some).map_err(|e| {
                minijinja::Error::new(
                    minijinja::ErrorKind::InvalidOperation,
                    format!("cannot read {}: {e}", path.display()),
                )
            });
        }
    }
    Ok(Embedded::get(name).map(|f| String::from_utf8_lossy(&f.data).into_owned()))
}

impl Templates {
    /// The portal's templates.
    pub fn new(dir: Option<&Path>) -> Result<Self, TemplateError> {
        Self::with_pages(dir, PAGES)
    }

    /// Templates with `pages` checked at start-up (the admin console has its own).
    pub fn with_pages(dir: Option<&Path>, pages: &[&str]) -> Result<Self, TemplateError> {
        if let Some(d) = dir
            && !d.is_dir()
        {
            return Err(TemplateError::MissingDir(d.to_owned()));
        }
        let mut env = Environment::new();
        if let Ok(syntax) = minijinja::syntax::SyntaxConfig::builder()
            .trim_blocks(true)
            .lstrip_blocks(true)
            .build()
        {
            env.set_syntax(syntax);
        }
        let dir = dir.map(Path::to_owned);
        env.set_loader(move |name| load(dir.as_deref(), name));
        // HTML-escape as minijinja does, but leave '/' alone: paths stay readable and small.
        env.set_formatter(|out, state, value| {
            if matches!(state.auto_escape(), AutoEscape::Html)
                && !value.is_safe()
                && let Some(text) = value.as_str()
            {
                out.write_str(&crate::markdown::escape(text))
                    .map_err(|_| minijinja::Error::from(minijinja::ErrorKind::WriteFailure))
            } else {
                minijinja::escape_formatter(out, state, value)
            }
        });
        env.add_filter("markdown", |text: Option<String>| {
            Value::from_safe_string(crate::markdown::render(&text.unwrap_or_default(), 1))
        });
        let templates = Self { env };
        for name in pages {
            templates
                .env
                .get_template(name)
                .map_err(|source| TemplateError::Invalid {
                    name: (*name).to_owned(),
                    source,
                })?;
        }
        Ok(templates)
    }

    pub fn render(&self, name: &str, context: Value) -> Result<String, minijinja::Error> {
        self.env.get_template(name)?.render(context)
    }
}
