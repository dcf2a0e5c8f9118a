"""Customers' web pages for the widget to live on: a real-looking shop, a page whose CSS
attacks everything, and a plain page whose elements share the widget's class names."""

from __future__ import annotations

SHOP = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<link rel="icon" href="data:,">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Northwind Coffee Roasters</title>
<style>
  body { margin: 0; font-family: Georgia, "DejaVu Serif", serif; color: #2b2118;
         background: #faf6f0; }
  nav { display: flex; justify-content: space-between; align-items: center;
        padding: 22px 48px; border-bottom: 1px solid #eadfcf; }
  nav b { font-size: 22px; letter-spacing: .5px; }
  nav span { font-family: Arial, sans-serif; font-size: 14px; margin-left: 28px;
             color: #6b5a4a; }
  header { padding: 72px 48px 40px; max-width: 720px; }
  h1 { font-size: 48px; line-height: 1.1; margin: 0 0 18px; }
  header p { font-size: 19px; line-height: 1.6; color: #5c4b3c; margin: 0; }
  .cards { display: flex; flex-wrap: wrap; gap: 24px; padding: 24px 48px 80px; }
  .card { flex: 1 1 220px; background: #fff; border: 1px solid #eadfcf; border-radius: 12px;
          padding: 24px; font-family: Arial, sans-serif; }
  .card h3 { margin: 0 0 8px; font-family: Georgia, serif; font-size: 20px; }
  .card p { margin: 0; color: #6b5a4a; line-height: 1.5; font-size: 15px; }
  @media (max-width: 600px) {
    nav { padding: 18px 20px; } nav span { display: none; }
    header { padding: 40px 20px 24px; } h1 { font-size: 34px; }
    .cards { padding: 16px 20px 60px; }
  }
</style>
</head>
<body>
<nav><b>Northwind Coffee</b><div><span>Shop</span><span>Roastery</span><span>Visit us</span>
<span>Help</span></div></nav>
<header>
  <h1>Small-batch coffee, roasted every morning.</h1>
  <p>Single-origin beans from farms we know by name, roasted in Leeds and shipped the
  same day. Questions about brewing, delivery or our café? Ask our assistant.</p>
</header>
<section class="cards">
  <div class="card"><h3>Fresh beans</h3><p>Roasted to order and sent within a day.</p></div>
  <div class="card"><h3>Brew guides</h3><p>Filter, espresso, cold brew: step by step.</p></div>
  <div class="card"><h3>The café</h3><p>Come by for a cup at the roastery.</p></div>
</section>
{embed}
</body>
</html>
"""

HOSTILE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<link rel="icon" href="data:,">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>A page with aggressive CSS</title>
<style>
  html { font-size: 40px; }
  :root { --accent: hotpink; --on-accent: lime; }
  * { color: red !important; font-size: 40px; font-family: "Courier New", monospace !important;
      line-height: 3 !important; letter-spacing: 4px !important;
      box-sizing: content-box !important; }
  div, section, header, form, p, h2, ul, li, span, button, textarea, svg {
      background: yellow !important; border: 6px dashed green !important;
      padding: 25px !important; margin: 15px !important; border-radius: 0 !important;
      position: static !important; transform: rotate(3deg) !important; }
  button { width: 300px !important; height: 120px !important; }
  .launcher, .panel, .bubble, .msg, .send, .input, .title, .source, .cm { display: none; }
  chatmeter-widget { display: none !important; opacity: 0 !important; }
</style>
</head>
<body>
<h1>Welcome</h1>
<p>Everything on this page is red and forty pixels tall.</p>
{embed}
</body>
</html>
"""

# Elements that share the widget's class names and tags, to see that its styles stay inside.
PLAIN = """<!doctype html>
<html lang="en">
<head><meta charset="utf-8">
<link rel="icon" href="data:,"><title>Plain page</title></head>
<body>
<div class="cm right"><section class="panel">panel</section>
<button class="launcher tool send">button</button></div>
<div class="msg user"><div class="bubble">bubble</div></div>
<ul class="sources"><li class="source"><span class="num">1</span>
<span class="name">name</span></li></ul>
<h2 class="title">title</h2><p class="subtitle foot">foot</p>
<form class="composer"><textarea class="input">text</textarea></form>
{embed}
</body>
</html>
"""
