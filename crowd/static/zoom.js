// Pictures that open large: a tap, a click or Enter on a picture link opens a dialog with the
// picture at the width of the screen; an exemplar strip opens as a grid of its patches (each about
// three times its size in the strip on a phone). Escape, Close or a tap outside shuts it and the
// focus goes back to the picture. Without JavaScript the link opens the picture in a new tab.
(function () {
  "use strict";
  var links = Array.prototype.slice.call(document.querySelectorAll("a.zoom"));
  if (!links.length || typeof HTMLDialogElement === "undefined") return;
  var GAP = 2;  // px between patches in a strip (explain/exemplars.py GAP_PX)

  var dialog = document.createElement("dialog");
  dialog.className = "zoom-dialog";
  dialog.setAttribute("aria-labelledby", "zoom-title");
  var bar = document.createElement("div");
  bar.className = "zoom-bar";
  var title = document.createElement("p");
  title.id = "zoom-title";
  var close = document.createElement("button");
  close.type = "button";
  close.className = "secondary";
  close.textContent = "Close";
  bar.appendChild(title);
  bar.appendChild(close);
  var body = document.createElement("div");
  body.className = "zoom-body";
  dialog.appendChild(bar);
  dialog.appendChild(body);
  document.body.appendChild(dialog);

  var opener = null;
  close.addEventListener("click", function () { dialog.close(); });
  dialog.addEventListener("click", function (ev) { if (ev.target === dialog) dialog.close(); });
  // keys pressed in the dialog stay there (outside, number keys answer the questions)
  dialog.addEventListener("keydown", function (ev) { ev.stopPropagation(); });
  dialog.addEventListener("close", function () {
    body.textContent = "";
    if (opener) opener.focus();
  });

  function patches(img) {
    var h = img.naturalHeight, w = img.naturalWidth;
    var n = Math.max(1, Math.round((w + GAP) / (h + GAP)));
    var step = n > 1 ? (w - h) / (n - 1) : 0;
    var grid = document.createElement("div");
    grid.className = "zoom-grid";
    for (var i = 0; i < n; i++) {
      var c = document.createElement("canvas");
      c.width = h;
      c.height = h;
      var ctx = c.getContext("2d");
      ctx.imageSmoothingEnabled = false;
      ctx.drawImage(img, Math.round(i * step), 0, h, h, 0, 0, h, h);
      c.setAttribute("role", "img");
      c.setAttribute("aria-label", "Patch " + (i + 1) + " of " + n);
      grid.appendChild(c);
    }
    return grid;
  }

  links.forEach(function (a) {
    a.addEventListener("click", function (ev) {
      var img = a.querySelector("img");
      if (!img || !img.complete || !img.naturalWidth) return;  // not loaded yet: the link opens it
      ev.preventDefault();
      opener = a;
      title.textContent = img.alt;
      body.textContent = "";
      if (a.dataset.zoom === "strip") {
        body.appendChild(patches(img));
      } else {
        var big = document.createElement("img");
        big.src = img.currentSrc || img.src;
        big.alt = img.alt;
        big.className = "zoom-img";
        body.appendChild(big);
      }
      dialog.showModal();
      close.focus();
    });
  });
})();
