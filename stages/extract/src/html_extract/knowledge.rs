//! What the `direct` HTML examples explain: a short, original note per element
//! or attribute, grouped by seed 004's categories.

/// A concept the direct examples can explain.
pub struct Concept {
    /// Element name, or attribute name for attribute concepts.
    pub key: &'static str,
    /// Whether `key` is an attribute.
    pub attribute: bool,
    /// Category (semantic, forms, tables, navigation, accessibility).
    pub category: &'static str,
    /// The explanation.
    pub note: &'static str,
}

const fn el(key: &'static str, category: &'static str, note: &'static str) -> Concept {
    Concept { key, attribute: false, category, note }
}

const fn attr(key: &'static str, category: &'static str, note: &'static str) -> Concept {
    Concept { key, attribute: true, category, note }
}

/// Every concept, in a fixed order.
pub const CONCEPTS: &[Concept] = &[
    el("header", "semantic", "`<header>` holds the introductory content of the page or of its nearest sectioning element: a title, a logo, often the main navigation. At the top level it is exposed to assistive technology as the `banner` landmark."),
    el("main", "semantic", "`<main>` wraps the content that is unique to this page. There should be one visible `<main>` per page; screen readers offer it as the `main` landmark so users can jump past repeated headers and menus."),
    el("article", "semantic", "`<article>` marks a self-contained composition that would still make sense syndicated on its own, such as a post, a product card or a comment. It should normally start with a heading."),
    el("section", "semantic", "`<section>` groups content under a common theme, usually introduced by a heading. Unlike `<div>`, it contributes to the document outline; with an accessible name it becomes a `region` landmark."),
    el("aside", "semantic", "`<aside>` contains content only indirectly related to the surrounding content: sidebars, call-outs, related links. It maps to the `complementary` landmark."),
    el("footer", "semantic", "`<footer>` closes its nearest sectioning element with information about it: authorship, copyright, related links. At the top level it becomes the `contentinfo` landmark."),
    el("figure", "semantic", "`<figure>` groups self-contained media (an image, a chart, a code listing) with an optional `<figcaption>` that describes it, so the caption is programmatically tied to the content."),
    el("time", "semantic", "`<time>` marks a date or time; its `datetime` attribute carries a machine-readable value while the element's text stays human-friendly."),
    el("nav", "navigation", "`<nav>` marks a block of major navigation links and is exposed as the `navigation` landmark. When a page has several, give each an `aria-label` (\"Main\", \"Breadcrumb\") so they can be told apart."),
    el("a", "navigation", "`<a href>` is the only element that is a link by default: it is focusable, activates with Enter, and its text should say where it goes. `aria-current=\"page\"` marks the link to the current page."),
    el("ol", "navigation", "An ordered list conveys sequence; breadcrumbs use `<ol>` inside a `<nav>` because the path from the home page down is ordered."),
    el("form", "forms", "`<form>` groups controls whose values are submitted together. `action` says where, `method` how (GET for searches that can be bookmarked, POST for changes). Each control needs a `name` to be submitted."),
    el("label", "forms", "`<label>` gives a form control its accessible name. Linking it with `for` (matching the control's `id`) also makes clicking the label focus the control, which enlarges the hit area."),
    el("fieldset", "forms", "`<fieldset>` groups related controls, and its first child `<legend>` names the group; screen readers announce the legend when focus enters the group, which is essential for radio buttons."),
    el("select", "forms", "`<select>` offers a choice from a list of `<option>`s (optionally grouped with `<optgroup>`). A first option with an empty value can act as a prompt without being a valid answer."),
    el("textarea", "forms", "`<textarea>` accepts multi-line text; `rows` sets its initial height and `maxlength` limits its length. Like any control it needs a label."),
    el("button", "forms", "`<button>` is focusable and keyboard-operable by default. Its `type` matters: `submit` (the default inside a form), `reset`, or `button` for script-driven actions."),
    el("input", "forms", "`<input>` changes behaviour with `type`: `email`, `url` and `number` get validation and suitable mobile keyboards; `required`, `min`, `max` and `pattern` add constraints the browser checks before submitting."),
    el("table", "tables", "`<table>` is for tabular data, not layout. A `<caption>` names it, `<thead>`/`<tbody>` separate header and body rows, and `<th>` cells with `scope` tie headers to their row or column."),
    el("caption", "tables", "`<caption>` is the table's title; it must be the first child of `<table>` and is announced as the table's name by screen readers."),
    el("th", "tables", "`<th>` marks a header cell. `scope=\"col\"` or `scope=\"row\"` says which cells it labels, so a screen reader can read \"Price: 12\" instead of a bare number."),
    attr("aria-label", "accessibility", "`aria-label` gives an element an accessible name when no visible text does, for example to tell two `<nav>` landmarks apart or to name an icon-only button. Visible text is preferred when there is some."),
    attr("aria-describedby", "accessibility", "`aria-describedby` points at the `id` of an element whose text is read as an extra description, typically a hint or an error message under a form field."),
    attr("aria-live", "accessibility", "`aria-live` makes screen readers announce changes to a region without moving focus: `polite` waits for a pause, `assertive` interrupts. It suits status messages and form errors."),
    attr("aria-current", "accessibility", "`aria-current` marks the current item in a set, such as `aria-current=\"page\"` on the link to the page being viewed in a navigation menu or breadcrumb."),
    attr("alt", "accessibility", "`alt` is the text alternative of an image: what the image conveys in context. Decorative images get `alt=\"\"` so screen readers skip them; leaving `alt` out makes them read the file name."),
    attr("lang", "accessibility", "`lang` on `<html>` declares the page's language so screen readers pick the right pronunciation and browsers hyphenate and translate correctly."),
    attr("role", "accessibility", "`role` overrides an element's semantics for assistive technology. Native elements are better (`<nav>` over `role=\"navigation\"`); `role` is for cases HTML has no element for, like `role=\"search\"` on older markup or `role=\"status\"`."),
    attr("scope", "tables", "`scope` on a `<th>` declares whether the header applies to its column (`col`), its row (`row`) or a group of them, which lets assistive technology announce the right header with each cell."),
    attr("required", "forms", "`required` makes the browser refuse to submit the form while the control is empty, and exposes the field as required to assistive technology. A visible marker should say so too."),
    attr("autocomplete", "forms", "`autocomplete` tells the browser what a field holds (`email`, `name`, `new-password`), so it can offer saved values; it also helps users with cognitive or motor impairments."),
];
