//! A small, safe Markdown subset for the landing page and the descriptions in API documents:
//! headings, paragraphs, bullet and numbered lists, block quotes, fenced code, rules, and inline
//! code, strong, emphasis and links. Every piece of text is HTML-escaped, raw HTML is shown as
//! text, and links keep only `http(s)`, `mailto` and relative URLs. Linear in the input: a
//! delimiter without a closer is remembered, never searched for twice.

/// Renders `text` as HTML. Headings are shifted down by `heading_offset` levels (a page's own
/// `<h1>` stays the only one), capped at `<h6>`.
pub fn render(text: &str, heading_offset: usize) -> String {
    let mut out = String::with_capacity(text.len() + text.len() / 4);
    let mut paragraph: Vec<&str> = Vec::new();
    let mut list: Option<(&'static str, Vec<String>)> = None;
    let mut quote: Vec<&str> = Vec::new();
    let mut lines = text.lines();
    while let Some(raw) = lines.next() {
        let line = raw.trim_end();
        let trimmed = line.trim_start();
        let block_start = trimmed.starts_with("```")
            || heading(trimmed).is_some()
            || is_rule(trimmed)
            || list_item(trimmed).is_some()
            || trimmed.starts_with('>')
            || trimmed.is_empty();
        if block_start {
            flush_paragraph(&mut out, &mut paragraph);
        }
        if !trimmed.starts_with('>') {
            flush_quote(&mut out, &mut quote);
        }
        if list_item(trimmed).is_none() && (block_start || list.is_some()) {
            // A plain line right after an item continues it.
            if let (Some((_, items)), false) = (&mut list, block_start) {
                if let Some(last) = items.last_mut() {
                    last.push(' ');
                    last.push_str(trimmed);
                }
                continue;
            }
            flush_list(&mut out, &mut list);
        }
        if let Some(fence) = trimmed.strip_prefix("```") {
            let lang = fence.trim();
            let mut code = String::new();
            for inner in lines.by_ref() {
                if inner.trim_start().starts_with("```") {
                    break;
                }
                code.push_str(inner);
                code.push('\n');
            }
            out.push_str("<pre><code");
            if !lang.is_empty() && lang.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
                out.push_str(" class=\"language-");
                out.push_str(lang);
                out.push('"');
            }
            out.push('>');
            escape_into(&mut out, &code);
            out.push_str("</code></pre>\n");
        } else if let Some((level, title)) = heading(trimmed) {
            let level = (level + heading_offset).min(6);
            out.push_str(&format!("<h{level}>"));
            inline_into(&mut out, title);
            out.push_str(&format!("</h{level}>\n"));
        } else if is_rule(trimmed) {
            out.push_str("<hr>\n");
        } else if let Some((kind, item)) = list_item(trimmed) {
            match &mut list {
                Some((current, items)) if *current == kind => items.push(item.to_owned()),
                _ => {
                    flush_list(&mut out, &mut list);
                    list = Some((kind, vec![item.to_owned()]));
                }
            }
        } else if let Some(rest) = trimmed.strip_prefix('>') {
            quote.push(rest.strip_prefix(' ').unwrap_or(rest));
        } else if !trimmed.is_empty() {
            paragraph.push(trimmed);
        }
    }
    flush_paragraph(&mut out, &mut paragraph);
    flush_quote(&mut out, &mut quote);
    flush_list(&mut out, &mut list);
    out
}

fn heading(line: &str) -> Option<(usize, &str)> {
    let level = line.chars().take_while(|c| *c == '#').count();
    if (1..=6).contains(&level) {
        let rest = line.get(level..)?;
        if rest.is_empty() || rest.starts_with(' ') {
            return Some((level, rest.trim().trim_end_matches('#').trim_end()));
        }
    }
    None
}

fn is_rule(line: &str) -> bool {
    let compact: String = line.chars().filter(|c| !c.is_whitespace()).collect();
    compact.len() >= 3
        && (compact.chars().all(|c| c == '-')
            || compact.chars().all(|c| c == '*')
            || compact.chars().all(|c| c == '_'))
}

fn list_item(line: &str) -> Option<(&'static str, &str)> {
    for bullet in ["- ", "* ", "+ "] {
        if let Some(rest) = line.strip_prefix(bullet) {
            return Some(("ul", rest.trim()));
        }
    }
    let digits = line.chars().take_while(char::is_ascii_digit).count();
    if (1..=9).contains(&digits) {
        let rest = line.get(digits..)?;
        if let Some(item) = rest.strip_prefix(". ").or_else(|| rest.strip_prefix(") ")) {
            return Some(("ol", item.trim()));
        }
    }
    None
}

fn flush_paragraph(out: &mut String, lines: &mut Vec<&str>) {
    if lines.is_empty() {
        return;
    }
    out.push_str("<p>");
    inline_into(out, &lines.join(" "));
    out.push_str("</p>\n");
    lines.clear();
}

fn flush_quote(out: &mut String, lines: &mut Vec<&str>) {
    if lines.is_empty() {
        return;
    }
    out.push_str("<blockquote>");
    out.push_str(&render(&lines.join("\n"), 6));
    out.push_str("</blockquote>\n");
    lines.clear();
}

fn flush_list(out: &mut String, list: &mut Option<(&'static str, Vec<String>)>) {
    let Some((kind, items)) = list.take() else {
        return;
    };
    out.push_str(&format!("<{kind}>"));
    for item in items {
        out.push_str("<li>");
        inline_into(out, &item);
        out.push_str("</li>");
    }
    out.push_str(&format!("</{kind}>\n"));
}

/// Escapes text for HTML element content and attribute values.
pub fn escape_into(out: &mut String, text: &str) {
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
}

pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    escape_into(&mut out, text);
    out
}

/// Keeps a link target only if it cannot run script: `http(s):`, `mailto:`, or relative.
fn safe_url(url: &str) -> Option<&str> {
    let url = url.trim();
    let lower = url.to_ascii_lowercase();
    if url.is_empty() || url.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return None;
    }
    if lower.starts_with("http://") || lower.starts_with("https://") || lower.starts_with("mailto:")
    {
        return Some(url);
    }
    // Relative: no scheme before the first '/', '?' or '#'.
    let head = url.split(['/', '?', '#']).next().unwrap_or_default();
    (!head.contains(':')).then_some(url)
}

/// Most levels of nested emphasis and links rendered as markup; deeper ones stay text.
const MAX_INLINE_DEPTH: usize = 4;

fn inline_into(out: &mut String, text: &str) {
    Inline::default().render(out, text, 0);
}

/// Remembers, per delimiter, the last search: where it started and what it found. The first
/// occurrence at or after `from` is known without searching again when the last search started
/// at or before `from` and found nothing, or found something at or after `from`.
#[derive(Default)]
struct Inline {
    searches: Vec<(&'static str, usize, Option<usize>)>,
}

impl Inline {
    fn closer(&mut self, text: &str, delim: &'static str, from: usize) -> Option<usize> {
        if let Some((_, started, found)) = self.searches.iter().find(|(d, _, _)| *d == delim)
            && *started <= from
            && found.is_none_or(|at| at >= from)
        {
            return *found;
        }
        let found = text
            .get(from..)
            .and_then(|rest| rest.find(delim))
            .map(|i| from + i);
        self.searches.retain(|(d, _, _)| *d != delim);
        self.searches.push((delim, from, found));
        found
    }

    fn render(&mut self, out: &mut String, text: &str, depth: usize) {
        let mut i = 0;
        let bytes = text.as_bytes();
        while i < text.len() {
            let rest = text.get(i..).unwrap_or_default();
            let c = rest.chars().next().unwrap_or(' ');
            let prev_alnum = i > 0 && bytes.get(i - 1).is_some_and(u8::is_ascii_alphanumeric);
            if c == '\\' {
                if let Some(next) = rest.chars().nth(1).filter(char::is_ascii_punctuation) {
                    escape_into(out, &next.to_string());
                    i += 1 + next.len_utf8();
                    continue;
                }
            } else if c == '`' {
                if let Some(end) = self.closer(text, "`", i + 1) {
                    out.push_str("<code>");
                    escape_into(out, text.get(i + 1..end).unwrap_or_default());
                    out.push_str("</code>");
                    i = end + 1;
                    continue;
                }
            } else if depth < MAX_INLINE_DEPTH && (rest.starts_with("**") || rest.starts_with("__"))
            {
                let delim = if rest.starts_with("**") { "**" } else { "__" };
                if (delim == "**" || !prev_alnum)
                    && let Some(end) = self.closer(text, delim, i + 2)
                    && end > i + 2
                {
                    out.push_str("<strong>");
                    let inner = text.get(i + 2..end).unwrap_or_default();
                    Inline::default().render(out, inner, depth + 1);
                    out.push_str("</strong>");
                    i = end + 2;
                    continue;
                }
            } else if depth < MAX_INLINE_DEPTH && (c == '*' || (c == '_' && !prev_alnum)) {
                let delim = if c == '*' { "*" } else { "_" };
                let next_space = rest.chars().nth(1).is_none_or(char::is_whitespace);
                if !next_space
                    && let Some(end) = self.closer(text, delim, i + 1)
                    && end > i + 1
                {
                    out.push_str("<em>");
                    let inner = text.get(i + 1..end).unwrap_or_default();
                    Inline::default().render(out, inner, depth + 1);
                    out.push_str("</em>");
                    i = end + 1;
                    continue;
                }
            } else if c == '[' && depth < MAX_INLINE_DEPTH {
                if let Some(mid) = self.closer(text, "](", i + 1)
                    && let Some(end) = self.closer(text, ")", mid + 2)
                {
                    let label = text.get(i + 1..mid).unwrap_or_default();
                    let url = text.get(mid + 2..end).unwrap_or_default();
                    if !label.contains('[') {
                        match safe_url(url) {
                            Some(url) => {
                                out.push_str("<a href=\"");
                                escape_into(out, url);
                                out.push_str("\">");
                                Inline::default().render(out, label, depth + 1);
                                out.push_str("</a>");
                            }
                            None => Inline::default().render(out, label, depth + 1),
                        }
                        i = end + 1;
                        continue;
                    }
                }
            } else if c == '<'
                && let Some(end) = self.closer(text, ">", i + 1)
            {
                let inner = text.get(i + 1..end).unwrap_or_default();
                let lower = inner.to_ascii_lowercase();
                if (lower.starts_with("http://") || lower.starts_with("https://"))
                    && safe_url(inner).is_some()
                {
                    out.push_str("<a href=\"");
                    escape_into(out, inner);
                    out.push_str("\">");
                    escape_into(out, inner);
                    out.push_str("</a>");
                    i = end + 1;
                    continue;
                }
            }
            escape_into(out, &c.to_string());
            i += c.len_utf8();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::render;

    #[test]
    fn blocks() {
        let html = render(
            "# Welcome\n\nSome *nice* **APIs**.\nSecond line.\n\n- one\n- two `x<y`\n\n1. first\n2. second\n\n```json\n{\"a\": \"<b>\"}\n```\n---\n> quoted",
            1,
        );
        assert!(html.contains("<h2>Welcome</h2>"), "{html}");
        assert!(html.contains("<p>Some <em>nice</em> <strong>APIs</strong>. Second line.</p>"));
        assert!(html.contains("<ul><li>one</li><li>two <code>x&lt;y</code></li></ul>"));
        assert!(html.contains("<ol><li>first</li><li>second</li></ol>"));
        assert!(html.contains(
            "<pre><code class=\"language-json\">{&quot;a&quot;: &quot;&lt;b&gt;&quot;}\n</code></pre>"
        ));
        assert!(html.contains("<hr>"));
        assert!(html.contains("<blockquote><p>quoted</p>\n</blockquote>"));
    }

    #[test]
    fn html_is_escaped_and_links_are_safe() {
        let html = render(
            "<script>alert(1)</script> [ok](https://example.com/a?b=1&c=2) [bad](javascript:alert(1)) [rel](/portal/apis) <https://x.example>",
            0,
        );
        assert!(!html.contains("<script"), "{html}");
        assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(html.contains("<a href=\"https://example.com/a?b=1&amp;c=2\">ok</a>"));
        assert!(!html.contains("javascript:"));
        assert!(html.contains("bad"));
        assert!(html.contains("<a href=\"/portal/apis\">rel</a>"));
        assert!(html.contains("<a href=\"https://x.example\">https://x.example</a>"));
        let attr = render("[x](https://a.example/\"onmouseover=\"alert(1))", 0);
        assert!(!attr.contains("\"onmouseover"), "{attr}");
    }

    #[test]
    fn snake_case_is_not_emphasis() {
        assert_eq!(
            render("use max_items_per_page", 0),
            "<p>use max_items_per_page</p>\n"
        );
        assert_eq!(render("2 * 3 * 4", 0), "<p>2 * 3 * 4</p>\n");
    }

    #[test]
    fn unmatched_delimiters_stay_linear() {
        let text = format!("{}{}", "*[`_".repeat(20_000), "[".repeat(20_000) + "](");
        let started = std::time::Instant::now();
        let html = render(&text, 0);
        assert!(html.len() >= text.len());
        assert!(started.elapsed() < std::time::Duration::from_secs(2));
    }
}
