// A build log that grows as output arrives: numbered lines, ANSI colours, and auto-scroll that
// stops while the reader scrolls up (and resumes at the bottom).
import { AnsiState, pieces } from "./ansi.js";
import { h } from "./dom.js";

export class LogView {
  constructor() {
    this.state = new AnsiState();
    this.lines = h("ol.log-lines", { "aria-label": "Build output" });
    this.empty = h("p.log-empty", {}, "No output yet.");
    this.jump = h(
      "button.jump",
      { type: "button", hidden: true, onclick: () => this.resume() },
      "↓ Follow output",
    );
    this.scroller = h("div.log", { tabindex: "0" }, this.empty, this.lines);
    this.node = h("div.log-frame", {}, this.scroller, this.jump);
    this.following = true;
    this.current = null;
    this.scroller.addEventListener("scroll", () => {
      const atEnd =
        this.scroller.scrollTop + this.scroller.clientHeight >= this.scroller.scrollHeight - 8;
      this.following = atEnd;
      this.jump.hidden = atEnd;
    });
  }

  /** Add output text (any chunk boundary: lines continue across calls). */
  append(text) {
    if (!text) return;
    this.empty.hidden = true;
    const parts = text.replace(/\r\n/g, "\n").split("\n");
    parts.forEach((part, index) => {
      if (index > 0) this.current = null; // a newline ended the line before
      // The empty piece after a final newline opens no line until more output comes.
      if (part === "" && index === parts.length - 1) return;
      if (this.current === null) this.newLine();
      const cleaned = part.replace(/\r/g, "");
      for (const [classes, piece] of pieces(cleaned, this.state)) {
        const span = document.createElement("span");
        if (classes) span.className = classes;
        span.textContent = piece;
        this.current.append(span);
      }
    });
    if (this.following) this.scroller.scrollTop = this.scroller.scrollHeight;
  }

  newLine() {
    this.current = h("li");
    this.lines.append(this.current);
  }

  resume() {
    this.following = true;
    this.jump.hidden = true;
    this.scroller.scrollTop = this.scroller.scrollHeight;
  }
}
