//! Link extraction: parse a page with a real HTML parser and resolve its `<a href>` targets.

use std::collections::HashSet;
use std::sync::LazyLock;

use scraper::{Html, Selector};
use url::Url;

static BASE_HREF: LazyLock<Selector> =
    LazyLock::new(|| Selector::parse("base[href]").expect("static selector parses"));
static A_HREF: LazyLock<Selector> =
    LazyLock::new(|| Selector::parse("a[href]").expect("static selector parses"));

/// The http(s) links of an HTML document, resolved, without fragments, each once, in document
/// order.
///
/// Relative links resolve against the document's base URL: the first `<base href>` (itself
/// resolved against `page_url`), or `page_url` when there is none or it does not parse. Links
/// that do not parse or whose scheme is not http or https (`mailto:`, `javascript:`, `data:`...)
/// are skipped.
pub fn extract_links(html: &str, page_url: &Url) -> Vec<Url> {
    let document = Html::parse_document(html);
    let base = document
        .select(&BASE_HREF)
        .next()
        .and_then(|base| base.value().attr("href"))
        .and_then(|href| page_url.join(href).ok())
        .unwrap_or_else(|| page_url.clone());

    let mut seen = HashSet::new();
    let mut links = Vec::new();
    for anchor in document.select(&A_HREF) {
        let Some(href) = anchor.value().attr("href") else { continue };
        let Some(link) = resolve(&base, href) else { continue };
        if seen.insert(link.clone()) {
            links.push(link);
        }
    }
    links
}

/// `href` resolved against `base`, fragment dropped; `None` unless it is an http(s) URL.
pub(crate) fn resolve(base: &Url, href: &str) -> Option<Url> {
    let mut link = base.join(href).ok()?;
    if !matches!(link.scheme(), "http" | "https") || link.host_str().is_none() {
        return None;
    }
    link.set_fragment(None);
    Some(link)
}

/// The longest prefix of `bytes` that is valid UTF-8 if only an incomplete character at its very
/// end keeps it from being so (as when a body is cut at a size cap); `None` if invalid elsewhere.
pub(crate) fn utf8_prefix(bytes: &[u8]) -> Option<&str> {
    match std::str::from_utf8(bytes) {
        Ok(text) => Some(text),
        // `error_len() == None` means the input ended inside a character.
        Err(e) if e.error_len().is_none() => std::str::from_utf8(&bytes[..e.valid_up_to()]).ok(),
        Err(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn links(html: &str, page: &str) -> Vec<String> {
        let page = Url::parse(page).unwrap();
        extract_links(html, &page).into_iter().map(String::from).collect()
    }

    #[test]
    fn resolves_relative_and_absolute_links() {
        let html = r#"<html><body>
            <a href="b.html">sibling</a>
            <a href="../up">parent</a>
            <a href="/root?q=1">root</a>
            <a href="//other.example/x">scheme-relative</a>
            <a href="HTTPS://Example.COM:443/y">absolute</a>
        </body></html>"#;
        assert_eq!(
            links(html, "http://site.test/dir/page.html"),
            [
                "http://site.test/dir/b.html",
                "http://site.test/up",
                "http://site.test/root?q=1",
                "http://other.example/x",
                "https://example.com/y",
            ]
        );
    }

    #[test]
    fn drops_fragments_and_duplicates() {
        let html = r##"<a href="#top">self</a><a href="/a#x">a</a><a href="/a#y">a</a><a href="/a">a</a>"##;
        assert_eq!(links(html, "http://h.test/p"), ["http://h.test/p", "http://h.test/a"]);
    }

    #[test]
    fn skips_non_http_schemes_and_bad_urls() {
        let html = r#"<a href="mailto:me@h.test">m</a><a href="javascript:void(0)">j</a>
            <a href="ftp://h.test/f">f</a><a href="data:text/html,hi">d</a>
            <a href="http://[::1">bad</a><a href="http://">empty host</a><a>no href</a>
            <a href=" /ok ">ok</a>"#;
        assert_eq!(links(html, "http://h.test/"), ["http://h.test/ok"]);
    }

    #[test]
    fn honours_the_first_base_href() {
        let html = r#"<html><head><base href="/docs/"><base href="/ignored/"></head>
            <body><a href="intro">i</a><a href="../top">t</a></body></html>"#;
        assert_eq!(
            links(html, "http://h.test/a/b"),
            ["http://h.test/docs/intro", "http://h.test/top"]
        );
    }

    #[test]
    fn base_href_may_name_another_host() {
        let html =
            r#"<a href="x">before base</a><base href="https://cdn.test/v2/"><a href="y">y</a>"#;
        // The base applies to the whole document, also to links before it.
        assert_eq!(
            links(html, "http://h.test/"),
            ["https://cdn.test/v2/x", "https://cdn.test/v2/y"]
        );
    }

    #[test]
    fn ignores_a_base_that_does_not_parse() {
        let html = r#"<base href="http://[bad"><a href="z">z</a>"#;
        assert_eq!(links(html, "http://h.test/d/"), ["http://h.test/d/z"]);
    }

    #[test]
    fn survives_malformed_html_and_truncation() {
        let html = r#"<p><a href="/one">one<div><a href='/two'>two</p><a href=/three>three"#;
        assert_eq!(
            links(html, "http://h.test/"),
            ["http://h.test/one", "http://h.test/two", "http://h.test/three"]
        );
        // A tag cut off by a body cap is not a link.
        assert_eq!(
            links(r#"<a href="/whole">w</a><a href="/cu"#, "http://h.test/"),
            ["http://h.test/whole"]
        );
    }

    #[test]
    fn links_inside_scripts_and_comments_are_not_links() {
        let html = r#"<script>document.write('<a href="/js">')</script><!-- <a href="/c"> -->
            <a href="/real">r</a>"#;
        assert_eq!(links(html, "http://h.test/"), ["http://h.test/real"]);
    }

    #[test]
    fn utf8_prefix_trims_only_a_cut_character() {
        assert_eq!(utf8_prefix("café".as_bytes()), Some("café"));
        let cut = &"café".as_bytes()[..4];
        assert_eq!(utf8_prefix(cut), Some("caf"));
        assert_eq!(utf8_prefix(b"caf\xe9 au lait"), None);
    }
}
