"""What a study is: its file's spec, the claims it tests, the default store locations."""
