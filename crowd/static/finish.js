document.getElementById("external-submit").submit();
