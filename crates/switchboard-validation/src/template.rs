//! Message templates: text with `{{parameter}}` placeholders.
//!
//! A placeholder is `{{`, a name (letters, digits, `_`, `-` and `.`, starting with a letter
//! or `_`; spaces around it are allowed), and `}}`. [`placeholders`] checks a template's text
//! when it is saved; [`render`] fills it in when it is sent.

use std::collections::BTreeSet;

/// Why a template text is not well formed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateSyntaxError {
    /// `{{` without a matching `}}`.
    #[error("a `{{{{` at character {0} is not closed by `}}}}`")]
    Unclosed(usize),
    /// A placeholder whose name is empty or has characters a name may not have.
    #[error("`{{{{{0}}}}}` is not a valid placeholder name")]
    BadName(String),
}

/// A parameter the template needs was not given.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("missing parameter `{0}`")]
pub struct MissingParameter(pub String);

/// One piece of a parsed template.
enum Piece<'a> {
    Text(&'a str),
    Placeholder(&'a str),
}

fn parse(text: &str) -> Result<Vec<Piece<'_>>, TemplateSyntaxError> {
    let mut pieces = Vec::new();
    let mut rest = text;
    let mut offset = 0;
    while let Some(start) = rest.find("{{") {
        pieces.push(Piece::Text(&rest[..start]));
        let after = &rest[start + 2..];
        let Some(end) = after.find("}}") else {
            return Err(TemplateSyntaxError::Unclosed(text[..offset + start].chars().count()));
        };
        let name = after[..end].trim();
        if !valid_name(name) {
            return Err(TemplateSyntaxError::BadName(after[..end].to_owned()));
        }
        pieces.push(Piece::Placeholder(name));
        let consumed = start + 2 + end + 2;
        offset += consumed;
        rest = &rest[consumed..];
    }
    pieces.push(Piece::Text(rest));
    Ok(pieces)
}

fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        && name.len() <= 64
}

/// The names of a template's placeholders, each once, in name order.
pub fn placeholders(text: &str) -> Result<BTreeSet<String>, TemplateSyntaxError> {
    Ok(parse(text)?
        .into_iter()
        .filter_map(|p| match p {
            Piece::Placeholder(name) => Some(name.to_owned()),
            Piece::Text(_) => None,
        })
        .collect())
}

/// Fills a template's placeholders with `value(name)`. Fails on the first placeholder (in
/// name order) that has no value; a text that is not well formed renders as it is, since
/// texts are checked when they are saved.
pub fn render<'v>(text: &str, value: impl Fn(&str) -> Option<&'v str>) -> Result<String, MissingParameter> {
    let Ok(pieces) = parse(text) else { return Ok(text.to_owned()) };
    let missing: BTreeSet<&str> = pieces
        .iter()
        .filter_map(|p| match p {
            Piece::Placeholder(name) if value(name).is_none() => Some(*name),
            _ => None,
        })
        .collect();
    if let Some(first) = missing.first() {
        return Err(MissingParameter((*first).to_owned()));
    }
    let mut out = String::with_capacity(text.len());
    for p in pieces {
        match p {
            Piece::Text(t) => out.push_str(t),
            Piece::Placeholder(name) => out.push_str(value(name).unwrap_or_default()),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<&'a str> {
        move |name| pairs.iter().find(|(k, _)| *k == name).map(|(_, v)| *v)
    }

    #[test]
    fn renders_every_placeholder() {
        let text = "Hi {{name}}, your code is {{ code }}. Bye {{name}}!";
        assert_eq!(placeholders(text).unwrap().into_iter().collect::<Vec<_>>(), ["code", "name"]);
        let out = render(text, params(&[("name", "Robert"), ("code", "1234"), ("unused", "x")])).unwrap();
        assert_eq!(out, "Hi Robert, your code is 1234. Bye Robert!");
        // A value is inserted as it is, never parsed again.
        assert_eq!(render("{{a}}", params(&[("a", "{{b}}")])).unwrap(), "{{b}}");
        assert_eq!(render("no placeholders", params(&[])).unwrap(), "no placeholders");
    }

    #[test]
    fn names_the_missing_parameter() {
        let e = render("{{b}} {{a}}", params(&[])).unwrap_err();
        assert_eq!(e, MissingParameter("a".into()));
    }

    #[test]
    fn rejects_malformed_texts() {
        assert_eq!(placeholders("Hi {{name"), Err(TemplateSyntaxError::Unclosed(3)));
        assert_eq!(placeholders("Hi {{}}"), Err(TemplateSyntaxError::BadName("".into())));
        assert_eq!(placeholders("Hi {{na me}}"), Err(TemplateSyntaxError::BadName("na me".into())));
        assert_eq!(placeholders("Hi {{1st}}"), Err(TemplateSyntaxError::BadName("1st".into())));
        assert!(placeholders("Hi {{first_name}} {{user.id}} {{x-y}}").is_ok());
    }
}
