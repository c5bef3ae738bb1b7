// Model output is untrusted. It is rendered from Markdown with raw HTML escaped
// (markdown-it, html: false), then sanitised (DOMPurify), and reaches the document only as
// DOMPurify's TrustedHTML: the page's Content-Security-Policy requires Trusted Types, so
// any other string written to innerHTML would throw.

let renderer = null;

function markdownRenderer() {
  if (renderer === null) {
    renderer = globalThis.markdownit({ html: false, linkify: false, typographer: false });
    // A model's image would be a request to wherever it points: shown as text instead.
    renderer.disable(["image"]);
    globalThis.DOMPurify.addHook("afterSanitizeAttributes", (node) => {
      if (node.tagName === "A") {
        node.setAttribute("rel", "noopener noreferrer nofollow");
        node.setAttribute("target", "_blank");
      }
    });
  }
  return renderer;
}

const SANITIZE = {
  RETURN_TRUSTED_TYPE: true,
  FORBID_TAGS: ["style", "img", "form", "input", "button", "textarea", "select", "iframe"],
  FORBID_ATTR: ["style"],
};

/** Replace `element`'s content with `text` rendered from Markdown, safely. */
export function showMarkdown(element, text) {
  const html = markdownRenderer().render(text);
  element.innerHTML = globalThis.DOMPurify.sanitize(html, SANITIZE);
}
