//! A cookie-keeping client that reads a page's forms and posts them as a
//! browser would: hidden fields (the CSRF token) included, redirects followed
//! by hand so each step can be checked.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use reqwest::StatusCode;
use reqwest::header::HeaderMap;

pub struct Browser {
    pub client: reqwest::Client,
    pub base: String,
}

#[derive(Debug, Clone)]
pub struct Page {
    pub status: StatusCode,
    pub url: String,
    pub headers: HeaderMap,
    pub html: String,
}

/// One `<form>` of a page: where it posts and its fields' current values.
#[derive(Debug, Clone)]
pub struct HtmlForm {
    pub action: String,
    pub fields: BTreeMap<String, String>,
    /// Names of `<button name=… value=…>` and their values, for decisions.
    pub buttons: Vec<(String, String)>,
    /// What a browser would send, in order: repeated names kept, unchecked
    /// checkboxes and disabled inputs left out.
    pub pairs: Vec<(String, String)>,
}

impl Browser {
    pub fn new(base: &str) -> Self {
        Self {
            client: crate::helpers::http_client(),
            base: base.to_owned(),
        }
    }

    fn absolute(&self, url: &str) -> String {
        if url.starts_with("http://") || url.starts_with("https://") {
            url.to_owned()
        } else {
            format!("{}{}", self.base, url)
        }
    }

    async fn read(&self, response: reqwest::Response) -> Page {
        let status = response.status();
        let url = response.url().to_string();
        let headers = response.headers().clone();
        let html = response.text().await.expect("body");
        Page {
            status,
            url,
            headers,
            html,
        }
    }

    /// GET without following redirects.
    pub async fn get_raw(&self, url: &str) -> Page {
        let response = self
            .client
            .get(self.absolute(url))
            .send()
            .await
            .expect("GET");
        self.read(response).await
    }

    /// GET, following same-site redirects (at most 10).
    pub async fn get(&self, url: &str) -> Page {
        let page = self.get_raw(url).await;
        self.follow(page).await
    }

    pub async fn follow(&self, mut page: Page) -> Page {
        for _ in 0..10 {
            if !page.status.is_redirection() {
                return page;
            }
            let location = page.headers["location"].to_str().unwrap().to_owned();
            page = self.get_raw(&location).await;
        }
        panic!("redirect loop at {}", page.url);
    }

    /// POSTs raw fields without following redirects.
    pub async fn post_raw(&self, url: &str, fields: &[(&str, &str)]) -> Page {
        let response = self
            .client
            .post(self.absolute(url))
            .form(fields)
            .send()
            .await
            .expect("POST");
        self.read(response).await
    }

    /// Fills the page's form that posts to `action` with `values` (over its
    /// own fields, hidden ones included) and submits it; no redirects followed.
    pub async fn submit_raw(&self, page: &Page, action: &str, values: &[(&str, &str)]) -> Page {
        let form = page.form(action);
        let mut fields = form.fields.clone();
        for (k, v) in values {
            fields.insert((*k).to_owned(), (*v).to_owned());
        }
        let pairs: Vec<(String, String)> = fields.into_iter().collect();
        let response = self
            .client
            .post(self.absolute(&form.action))
            .form(&pairs)
            .send()
            .await
            .expect("POST form");
        self.read(response).await
    }

    /// Submits the page's form that posts to `action` as a browser would
    /// (`HtmlForm::pairs`), where every name given in `values` is sent with
    /// exactly those values instead (so a repeated field like `scope` can be
    /// given several values).
    pub async fn submit_pairs_raw(
        &self,
        page: &Page,
        action: &str,
        values: &[(&str, &str)],
    ) -> Page {
        let form = page.form(action);
        let mut pairs: Vec<(String, String)> = form
            .pairs
            .into_iter()
            .filter(|(k, _)| !values.iter().any(|(name, _)| name == k))
            .collect();
        pairs.extend(
            values
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
        );
        let response = self
            .client
            .post(self.absolute(&form.action))
            .form(&pairs)
            .send()
            .await
            .expect("POST form");
        self.read(response).await
    }

    /// `submit_raw`, then follows redirects.
    pub async fn submit(&self, page: &Page, action: &str, values: &[(&str, &str)]) -> Page {
        let page = self.submit_raw(page, action, values).await;
        self.follow(page).await
    }
}

impl Page {
    /// The form posting to `action`; panics with the page when there is none.
    pub fn form(&self, action: &str) -> HtmlForm {
        self.forms()
            .into_iter()
            .find(|f| f.action == action || f.action.split('?').next() == Some(action))
            .unwrap_or_else(|| panic!("no form to {action} on {}:\n{}", self.url, self.html))
    }

    pub fn forms(&self) -> Vec<HtmlForm> {
        let mut forms = Vec::new();
        let mut rest = self.html.as_str();
        while let Some(start) = rest.find("<form") {
            let after = &rest[start..];
            let end = after.find("</form>").expect("closed form");
            let markup = &after[..end];
            let open_end = markup.find('>').expect("form tag");
            let attrs = attributes(&markup[5..open_end]);
            let mut form = HtmlForm {
                action: attrs.get("action").cloned().unwrap_or_default(),
                fields: BTreeMap::new(),
                buttons: Vec::new(),
                pairs: Vec::new(),
            };
            for tag in tags(markup, "<input") {
                let a = attributes(tag);
                if let Some(name) = a.get("name") {
                    let value = a.get("value").cloned().unwrap_or_default();
                    form.fields.insert(name.clone(), value.clone());
                    let flag = |f: &str| tag.split_whitespace().any(|w| w == f);
                    let checkable = matches!(
                        a.get("type").map(String::as_str),
                        Some("checkbox" | "radio")
                    );
                    if !flag("disabled") && (!checkable || flag("checked")) {
                        form.pairs.push((name.clone(), value));
                    }
                }
            }
            for tag in tags(markup, "<button") {
                let a = attributes(tag);
                if let Some(name) = a.get("name") {
                    form.buttons
                        .push((name.clone(), a.get("value").cloned().unwrap_or_default()));
                }
            }
            forms.push(form);
            rest = &after[end..];
        }
        forms
    }

    /// The text of the first element with `role="alert"`, if any.
    pub fn alert(&self) -> Option<String> {
        let start = self.html.find("role=\"alert\"")?;
        let after = &self.html[start..];
        let open = after.find('>')? + 1;
        let close = after[open..].find('<')?;
        Some(unescape(after[open..open + close].trim()))
    }

    pub fn contains(&self, text: &str) -> bool {
        self.html.contains(text)
    }

    /// The text inside the element with `id="ID"` (its first text run).
    pub fn element_text(&self, id: &str) -> Option<String> {
        let start = self.html.find(&format!("id=\"{id}\""))?;
        let after = &self.html[start..];
        let open = after.find('>')? + 1;
        let close = after[open..].find('<')?;
        Some(unescape(after[open..open + close].trim()))
    }

    /// The texts of the `<li>` items inside the element with `id="ID"`.
    pub fn list_items(&self, id: &str) -> Vec<String> {
        let Some(start) = self.html.find(&format!("id=\"{id}\"")) else {
            return Vec::new();
        };
        let after = &self.html[start..];
        let end = after
            .find("</ul>")
            .or_else(|| after.find("</ol>"))
            .unwrap_or(after.len());
        after[..end]
            .split("<li>")
            .skip(1)
            .map(|item| {
                let text: String = strip_tags(item.split("</li>").next().unwrap_or(""));
                unescape(text.trim())
            })
            .collect()
    }

    /// The `href` of the first link whose text is `text`.
    pub fn link(&self, text: &str) -> Option<String> {
        let end = self.html.find(&format!(">{text}</a>"))?;
        let start = self.html[..end].rfind("<a ")?;
        attributes(&self.html[start + 2..end]).get("href").cloned()
    }
}

/// The opening tags starting with `prefix` inside `markup`, without the prefix.
fn tags<'a>(markup: &'a str, prefix: &str) -> Vec<&'a str> {
    let mut out = Vec::new();
    let mut rest = markup;
    while let Some(i) = rest.find(prefix) {
        let after = &rest[i + prefix.len()..];
        let end = after.find('>').unwrap_or(after.len());
        out.push(&after[..end]);
        rest = &after[end..];
    }
    out
}

/// `name="value"` pairs of a tag (double-quoted values, as our pages write them).
fn attributes(tag: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut rest = tag;
    while let Some(eq) = rest.find("=\"") {
        let name = rest[..eq]
            .rsplit(|c: char| c.is_whitespace())
            .next()
            .unwrap_or("")
            .to_owned();
        let value_start = eq + 2;
        let value_end = rest[value_start..].find('"').map(|i| value_start + i);
        let Some(value_end) = value_end else { break };
        out.insert(name, unescape(&rest[value_start..value_end]));
        rest = &rest[value_end + 1..];
    }
    out
}

fn strip_tags(html: &str) -> String {
    let mut out = String::new();
    let mut in_tag = false;
    for c in html.chars() {
        match c {
            '<' => in_tag = true,
            '>' => in_tag = false,
            c if !in_tag => out.push(c),
            _ => {}
        }
    }
    out
}

pub fn unescape(text: &str) -> String {
    text.replace("&quot;", "\"")
        .replace("&#34;", "\"")
        .replace("&#x27;", "'")
        .replace("&#39;", "'")
        .replace("&lt;", "<")
        .replace("&#60;", "<")
        .replace("&gt;", ">")
        .replace("&#62;", ">")
        .replace("&#38;", "&")
        .replace("&amp;", "&")
}

/// The `.eml` files of an outbox, oldest first.
pub fn outbox(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "eml"))
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
}

/// The messages in an outbox sent to `to`, oldest first, as text.
pub fn emails_to(dir: &Path, to: &str) -> Vec<String> {
    outbox(dir)
        .into_iter()
        .map(|p| std::fs::read_to_string(p).expect("read .eml"))
        .filter(|m| {
            m.lines().any(|l| {
                l.to_ascii_lowercase().starts_with("to:")
                    && l.to_ascii_lowercase().contains(&to.to_ascii_lowercase())
            })
        })
        .collect()
}

/// The first link in `message` that starts with `prefix`.
pub fn link_in(message: &str, prefix: &str) -> Option<String> {
    let start = message.find(prefix)?;
    let rest = &message[start..];
    let end = rest
        .find(|c: char| c.is_whitespace() || c == '"' || c == '<' || c == '>')
        .unwrap_or(rest.len());
    Some(rest[..end].to_owned())
}
