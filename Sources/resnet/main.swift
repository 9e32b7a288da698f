print("resnet")
