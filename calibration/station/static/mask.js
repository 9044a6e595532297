// Care mask editor: polygons drawn on the anchor frame, in the frame's own pixels (the canvas has
// the frame's size; CSS may scale it, clicks are mapped back). Saved as {care: [...], ignore: [...]}.
(function () {
  const canvas = document.getElementById("mask-canvas");
  const ctx = canvas.getContext("2d");
  const image = new Image();
  const polys = { care: [], ignore: [] };
  const initial = JSON.parse(document.getElementById("mask-initial").textContent || "{}");
  for (const k of ["care", "ignore"]) polys[k] = (initial && initial[k]) || [];
  let current = [];
  const mode = () => document.querySelector("input[name=mode]:checked").value;

  function draw() {
    ctx.drawImage(image, 0, 0, canvas.width, canvas.height);
    const style = { care: "rgba(20,170,60,", ignore: "rgba(220,40,40," };
    for (const k of ["care", "ignore"]) {
      for (const p of polys[k]) {
        ctx.beginPath();
        p.forEach(([x, y], i) => (i ? ctx.lineTo(x, y) : ctx.moveTo(x, y)));
        ctx.closePath();
        ctx.fillStyle = style[k] + "0.30)";
        ctx.strokeStyle = style[k] + "1)";
        ctx.lineWidth = 2;
        ctx.fill();
        ctx.stroke();
      }
    }
    if (current.length) {
      ctx.beginPath();
      current.forEach(([x, y], i) => (i ? ctx.lineTo(x, y) : ctx.moveTo(x, y)));
      ctx.strokeStyle = "#ffd400";
      ctx.lineWidth = 2;
      ctx.stroke();
      for (const [x, y] of current) ctx.fillRect(x - 2, y - 2, 4, 4);
    }
  }

  canvas.addEventListener("click", (ev) => {
    const r = canvas.getBoundingClientRect();
    const x = ((ev.clientX - r.left) * canvas.width) / r.width;
    const y = ((ev.clientY - r.top) * canvas.height) / r.height;
    current.push([Math.round(x * 10) / 10, Math.round(y * 10) / 10]);
    draw();
  });
  document.getElementById("close-poly").addEventListener("click", () => {
    if (current.length >= 3) polys[mode()].push(current);
    current = [];
    draw();
  });
  document.getElementById("undo").addEventListener("click", () => { current.pop(); draw(); });
  document.getElementById("clear").addEventListener("click", () => { polys.care = []; polys.ignore = []; current = []; draw(); });
  document.getElementById("save-mask").addEventListener("click", async () => {
    if (current.length >= 3) { polys[mode()].push(current); current = []; draw(); }
    const status = document.getElementById("mask-status");
    const res = await fetch(canvas.dataset.save, {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(polys),
    });
    const text = await res.text();
    if (!res.ok) { status.textContent = "not saved: " + text.replace(/<[^>]*>/g, " ").trim(); status.className = "bad"; return; }
    const data = JSON.parse(text);
    document.getElementById("mask-preview").src = data.preview;
    status.textContent = "saved " + data.saved + " - inspected area " + (100 * data.care_fraction).toFixed(1) + " %";
    status.className = "ok";
  });
  image.onload = draw;
  image.src = canvas.dataset.src;
})();
