// Inline PDF view with the vendored pdf.js (static/vendor/pdfjs): every page drawn into a canvas, no plug-in,
// no download. Module script with a CSP nonce; pdf.js runs without eval (isEvalSupported: false).
const box = document.getElementById("pdf-viewer");
if (box) {
  const { getDocument, GlobalWorkerOptions } = await import(box.dataset.lib);
  GlobalWorkerOptions.workerSrc = box.dataset.worker;
  try {
    const pdf = await getDocument({ url: box.dataset.src, isEvalSupported: false, withCredentials: true }).promise;
    box.replaceChildren();
    box.dataset.pages = String(pdf.numPages);
    for (let n = 1; n <= pdf.numPages; n += 1) {
      const page = await pdf.getPage(n);
      const viewport = page.getViewport({ scale: 1.4 });
      const canvas = document.createElement("canvas");
      canvas.width = Math.floor(viewport.width);
      canvas.height = Math.floor(viewport.height);
      canvas.className = "pdf-page";
      canvas.setAttribute("role", "img");
      canvas.setAttribute("aria-label", `${box.dataset.pageLabel} ${n} / ${pdf.numPages}`);
      box.appendChild(canvas);
      await page.render({ canvasContext: canvas.getContext("2d"), viewport, canvas }).promise;
    }
    box.dataset.rendered = "1";
  } catch (err) {
    const p = document.createElement("p");
    p.className = "error";
    p.textContent = box.dataset.error;
    box.replaceChildren(p);
    box.dataset.rendered = "error";
  }
}
