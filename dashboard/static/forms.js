// After a form comes back with errors (a page load, or htmx swapping in a 422 answer), move the
// keyboard focus to its first invalid field and bring that field into view.
function focusFirstInvalid() {
  const marked = document.querySelector('[aria-invalid="true"]');
  if (!marked) return;
  const field = marked.matches("input, select, textarea")
    ? marked
    : marked.querySelector("input, select, textarea");
  if (!field) return;
  field.focus({ preventScroll: true });
  field.scrollIntoView({ block: "center" });
}

document.addEventListener("DOMContentLoaded", focusFirstInvalid);
document.addEventListener("htmx:afterSettle", (event) => {
  if (event.detail.xhr && event.detail.xhr.status === 422) focusFirstInvalid();
});
